import tseslint from "typescript-eslint";

// Biome does formatting and most lint; ESLint adds the typed rules that matter in streaming code.
export default tseslint.config(
  {
    ignores: [
      "gen/**",
      "dist/**",
      "node_modules/**",
      "clients/sdk/dist/**",
      "clients/sdk/src/gen/**",
      "bench/results/**",
      "eslint.config.js",
    ],
  },
  {
    files: ["**/*.ts"],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "@typescript-eslint": tseslint.plugin },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/switch-exhaustiveness-check": "error",
    },
  },
);
