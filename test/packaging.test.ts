import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };

/** The exec-form JSON array of a Dockerfile instruction in the final stage. */
function instruction(dockerfile: string, name: string): string[] {
  const finalStage = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
  const joined = finalStage.replace(/\\\n\s*/g, " ");
  const line = joined.split("\n").find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no ${name} in the final stage`);
  const json = line.slice(line.indexOf("["));
  return JSON.parse(json) as string[];
}

describe("the container image's command", () => {
  it("starts the server from a production build, and the image's health check passes against it", async () => {
    await run("npm", ["run", "build"], { cwd: root });
    const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
    const [nodeBinary, ...entry] = instruction(dockerfile, "ENTRYPOINT");
    const cmd = instruction(dockerfile, "CMD");
    expect(nodeBinary).toBe("/nodejs/bin/node");
    expect(entry).toEqual(["dist/clients/cli/countersign.js"]);
    expect(cmd[0]).toBe("serve");

    const dir = mkdtempSync(join(tmpdir(), "countersign-image-"));
    const policy = join(dir, "policies.yaml");
    writeFileSync(policy, readFileSync(join(root, "examples/policies.yaml")));
    // The image's command, with the paths and ports of this machine (later flags win).
    const args = [
      ...entry,
      ...cmd,
      "--policy",
      policy,
      "--grpc-listen",
      "127.0.0.1:0",
      "--connect-listen",
      "127.0.0.1:0",
      "--ops-listen",
      "127.0.0.1:0",
    ];
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, NODE_ENV: "production" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const ops = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error("the production build did not start within 30 s")),
          30_000,
        );
        child.once("exit", (code) => reject(new Error(`the production build exited with ${code}`)));
        createInterface({ input: child.stdout }).on("line", (line) => {
          if (!line.includes('"countersign is serving"')) return;
          clearTimeout(timer);
          resolve((JSON.parse(line) as { ops: string }).ops);
        });
      });
      expect(await (await fetch(`${ops}/version`)).json()).toEqual({ version: pkg.version });
      const [, ...healthcheck] = instruction(dockerfile, "HEALTHCHECK");
      const port = new URL(ops).port;
      const check = healthcheck.map((a) => a.replace("127.0.0.1:9090", `127.0.0.1:${port}`));
      await expect(run(process.execPath, check)).resolves.toBeDefined();
    } finally {
      child.kill("SIGTERM");
    }
  }, 180_000);
});

describe("release metadata", () => {
  it("reports the package version from the CLI and records it in the changelog", async () => {
    const { stdout } = await run(process.execPath, [
      "--import",
      "tsx",
      join(root, "clients/cli/countersign.ts"),
      "--version",
    ]);
    expect(stdout.trim()).toBe(pkg.version);
    expect(readFileSync(join(root, "CHANGELOG.md"), "utf8")).toContain(`## [${pkg.version}]`);
  });

  it("writes a CycloneDX SBOM of the production dependencies", async () => {
    const out = join(mkdtempSync(join(tmpdir(), "countersign-sbom-")), "sbom.json");
    await run("npx", ["cyclonedx-npm", "--omit", "dev", "--output-format", "JSON", "--output-file", out], {
      cwd: root,
    });
    const sbom = JSON.parse(readFileSync(out, "utf8")) as {
      bomFormat: string;
      metadata: { component: { name: string; version: string } };
      components: { name: string }[];
    };
    expect(sbom.bomFormat).toBe("CycloneDX");
    expect(sbom.metadata.component).toMatchObject({ name: "countersign", version: pkg.version });
    const names = sbom.components.map((c) => c.name);
    expect(names).toContain("grpc-js");
    expect(names).not.toContain("vitest");
  }, 60_000);
});

interface Container {
  args: string[];
  livenessProbe: { httpGet: unknown };
  readinessProbe: { httpGet: unknown };
  resources: { requests?: unknown };
}
interface Manifest {
  kind: string;
  spec: {
    replicas?: number;
    minAvailable?: number;
    template: { spec: { containers: Container[]; securityContext: { runAsNonRoot?: boolean } } };
  };
  data?: Record<string, string>;
}

describe("Kubernetes manifests", () => {
  const manifests = [
    "deployment.yaml",
    "service.yaml",
    "pod-disruption-budget.yaml",
    "policy-configmap.yaml",
  ].flatMap((file) =>
    parseAllDocuments(readFileSync(join(root, "deploy/kubernetes", file), "utf8")).map(
      (d) => d.toJS() as Manifest,
    ),
  );
  const deployment = manifests.find((m) => m.kind === "Deployment");

  it("run three replicas with health probes on the ops port and a disruption budget", () => {
    expect(deployment?.spec.replicas).toBe(3);
    const container = deployment?.spec.template.spec.containers[0] as Container;
    expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "ops" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "ops" });
    expect(container.resources.requests).toBeDefined();
    expect(deployment?.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    expect(manifests.find((m) => m.kind === "PodDisruptionBudget")?.spec.minAvailable).toBe(2);
  });

  it("pass only flags that `countersign serve` accepts, and a policy that validates", async () => {
    const container = deployment?.spec.template.spec.containers[0] as Container;
    const { stdout } = await run(process.execPath, [
      "--import",
      "tsx",
      join(root, "clients/cli/countersign.ts"),
      "serve",
      "--help",
    ]);
    for (const arg of container.args.slice(1)) {
      const flag = arg.split("=")[0] as string;
      expect(stdout, flag).toContain(flag);
    }
    const policy = manifests.find((m) => m.kind === "ConfigMap")?.data?.["policies.yaml"] ?? "";
    const { parsePolicyDocument } = await import("../server/policy/policy-loader.js");
    expect(parsePolicyDocument(policy).ok).toBe(true);
  });
});
