import type { Command } from "commander";
import { loadPolicyFile } from "../../server/policy/policy-loader.js";

/** `countersign policy validate FILE...`: the server's own validation, offline, for pre-merge CI. */
export function addPolicyCommand(program: Command): void {
  const policy = program.command("policy").description("work with policy files");
  policy
    .command("validate")
    .description("validate policy files offline with the server's own rules; exit status 1 on any error")
    .argument("<files...>", "policy files (YAML or JSON)")
    .option("--output <format>", "text or json", "text")
    .action(async (files: string[], opts: { output: string }) => {
      let failed = false;
      const results = [];
      for (const file of files) {
        // The server's own loading: the same size, nesting and alias limits, the same messages.
        const result = await loadPolicyFile(file);
        if (result.ok) {
          results.push({
            file,
            valid: true,
            sha256: result.sha256,
            policies: result.policySet.policies.length,
          });
        } else {
          failed = true;
          results.push({ file, valid: false, problems: result.problems });
        }
      }
      if (opts.output === "json") {
        process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      } else {
        for (const r of results) {
          if (r.valid)
            process.stdout.write(`${r.file}: valid (${r.policies} policies, sha256 ${r.sha256})\n`);
          else
            for (const p of r.problems ?? [])
              process.stderr.write(`${r.file}: ${p.path || "(file)"}: ${p.message}\n`);
        }
      }
      if (failed) process.exitCode = 1;
    });
}
