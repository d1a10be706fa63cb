import { readFileSync } from "node:fs";

function findVersion(): string {
  // server/version.ts in the source tree, dist/server/version.js in a build.
  for (const path of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "countersign" && pkg.version !== undefined) return pkg.version;
    } catch {
      // try the next location (source tree or dist/)
    }
  }
  return "0.0.0";
}

/** The version of the countersign package. */
export const version: string = findVersion();
