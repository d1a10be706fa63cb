import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createManualClock } from "../domain/clock.js";
import { createPolicyHolder, createStaticPolicyHolder, type PolicyReloadEvent } from "./policy-holder.js";
import { PolicyLoadError } from "./policy-loader.js";

function policyFile(timeout: string, ...names: string[]): string {
  const policies = names
    .map(
      (name) => `  - { name: ${name}, match: "${name}.*", approvers: { users: [U1] }, timeout: ${timeout} }`,
    )
    .join("\n");
  return `version: 1\ndefaults: { channel: C0 }\npolicies:\n${policies}\n`;
}

const invalidFile =
  "version: 1\ndefaults: { channel: C0, super_approvers: [UADMIN] }\npolicies:\n  - { name: deploy, match: deploy.*, aprovers: { users: [U1] } }\n";

/** Resolves with the first event `predicate` accepts; rejects after `ms`. */
function nextEvent(
  events: PolicyReloadEvent[],
  listeners: ((event: PolicyReloadEvent) => void)[],
  predicate: (event: PolicyReloadEvent) => boolean,
  ms = 5_000,
): Promise<PolicyReloadEvent> {
  const seen = events.find(predicate);
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no matching reload event within ${ms} ms`)), ms);
    listeners.push((event) => {
      if (!predicate(event)) return;
      clearTimeout(timer);
      resolve(event);
    });
  });
}

describe("createPolicyHolder", () => {
  let dir: string;
  let path: string;
  let events: PolicyReloadEvent[];
  let listeners: ((event: PolicyReloadEvent) => void)[];
  const clock = createManualClock(1_000);

  const holderFor = (debounceMs = 20) =>
    createPolicyHolder({
      path,
      clock,
      debounceMs,
      onReload: (event) => {
        events.push(event);
        for (const listener of listeners) listener(event);
      },
    });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "countersign-holder-"));
    path = join(dir, "policies.yaml");
    events = [];
    listeners = [];
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is empty until loaded, then holds the set with its hash, source and load time", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    expect(holder.current()).toBeUndefined();
    const loaded = await holder.load();
    expect(holder.current()).toBe(loaded);
    expect(loaded.source).toBe(path);
    expect(loaded.loadTime).toBe(1_000);
    expect(loaded.sha256).toBe(loaded.policySet.sha256);
    expect(loaded.policySet.policies.map((p) => p.name)).toEqual(["deploy"]);
    expect(events).toEqual([
      { outcome: "applied", trigger: "load", previousSha256: undefined, current: loaded },
    ]);
  });

  it("fails the first load of an invalid or missing file with every problem", async () => {
    const holder = holderFor();
    await expect(holder.load()).rejects.toMatchObject({
      name: "PolicyLoadError",
      source: path,
      problems: [{ path: "(file)", message: `cannot read ${path}: no such file` }],
    });
    await writeFile(path, invalidFile);
    await expect(holder.load()).rejects.toMatchObject({
      problems: [{ path: "policies[0].aprovers", message: "unknown key" }],
    });
    expect(holder.current()).toBeUndefined();
    expect(events.map((e) => e.outcome)).toEqual(["rejected", "rejected"]);
  });

  it("applies a valid change on reload", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    const first = await holder.load();
    clock.advance(5_000);
    await writeFile(path, policyFile("20m", "deploy", "db"));
    const result = await holder.reload();
    expect(result).toMatchObject({ applied: true, changed: true, policyCount: 2 });
    expect(result.candidateSha256).not.toBe(first.sha256);
    expect(result.current).toBe(holder.current());
    expect(result.current.sha256).toBe(result.candidateSha256);
    expect(result.current.loadTime).toBe(first.loadTime + 5_000);
    expect(events.at(-1)).toEqual({
      outcome: "applied",
      trigger: "reload",
      previousSha256: first.sha256,
      current: result.current,
    });
  });

  it("adopts a document from elsewhere with the same validation, keeping its set when it is invalid", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    const first = await holder.load();
    const text = policyFile("20m", "deploy", "db");
    const adopted = await holder.adopt(text, "replica-b's file");
    expect(adopted).toMatchObject({ applied: true, changed: true, policyCount: 2 });
    expect(adopted.current).toMatchObject({ text, source: "replica-b's file" });
    expect(events.at(-1)).toEqual({
      outcome: "applied",
      trigger: "sync",
      previousSha256: first.sha256,
      current: adopted.current,
    });
    await expect(holder.adopt(invalidFile, "replica-c's file")).rejects.toMatchObject({
      name: "PolicyLoadError",
      source: "replica-c's file",
      problems: [{ path: "policies[0].aprovers", message: "unknown key" }],
    });
    expect(holder.current()).toBe(adopted.current);
    expect(events.at(-1)).toMatchObject({ outcome: "rejected", trigger: "sync", current: adopted.current });
    // The file on disk is this replica's again at the next reload.
    expect((await holder.reload()).current).toMatchObject({ sha256: first.sha256, source: path });
  });

  it("parses with the parser it is given, for loads and adoptions alike", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const refusing = createPolicyHolder({
      path,
      parse: () => ({ ok: false, problems: [{ path: "(root)", message: "refused by this release" }] }),
    });
    await expect(refusing.load()).rejects.toMatchObject({
      problems: [{ path: "(root)", message: "refused by this release" }],
    });
    await expect(refusing.adopt(policyFile("10m", "db"), "elsewhere")).rejects.toMatchObject({
      source: "elsewhere",
    });
    expect(refusing.current()).toBeUndefined();
  });

  it("keeps the old set when the new file is invalid, and reports every problem", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    const first = await holder.load();
    await writeFile(path, invalidFile.replace("match: deploy.*", "match: deploy.*, timeout: 5s"));
    const error = await holder.reload().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PolicyLoadError);
    expect((error as PolicyLoadError).problems).toEqual([
      { path: "policies[0].aprovers", message: "unknown key" },
      { path: "policies[0].timeout", message: "must be between 1m and 7d (is 5s)" },
    ]);
    expect(holder.current()).toBe(first);
    expect(events.at(-1)).toMatchObject({ outcome: "rejected", trigger: "reload", current: first });
  });

  it("validates without applying on a dry run", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    const first = await holder.load();
    await writeFile(path, policyFile("10m", "deploy", "db", "secrets"));
    const result = await holder.reload({ dryRun: true });
    expect(result).toMatchObject({ applied: false, changed: true, policyCount: 3, current: first });
    expect(holder.current()).toBe(first);
    await writeFile(path, invalidFile);
    await expect(holder.reload({ dryRun: true })).rejects.toBeInstanceOf(PolicyLoadError);
    expect(holder.current()).toBe(first);
    expect(events).toHaveLength(1);
  });

  it("refuses a dry run before anything is loaded", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    await expect(holderFor().reload({ dryRun: true })).rejects.toThrow(/no policies are loaded/);
  });

  it("keeps the same set when the file did not change", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    const first = await holder.load();
    // Comments and formatting do not change the hash: it is over the JSON form.
    await writeFile(path, `# a comment\n${policyFile("10m", "deploy")}`);
    const result = await holder.reload();
    expect(result).toMatchObject({
      applied: true,
      changed: false,
      candidateSha256: first.sha256,
      current: first,
    });
    expect(events.at(-1)).toEqual({ outcome: "unchanged", trigger: "reload", current: first });
  });

  it("runs concurrent reloads one at a time; the last one wins", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    await holder.load();
    await writeFile(path, policyFile("10m", "deploy", "db"));
    const [a, b] = await Promise.all([holder.reload(), holder.reload()]);
    expect(a.changed).toBe(true);
    expect(b.changed).toBe(false);
    expect(holder.current()?.policySet.policies).toHaveLength(2);
  });

  it("reloads on file changes when watching, and keeps the old set on a bad edit", async () => {
    await writeFile(path, policyFile("10m", "deploy"));
    const holder = holderFor();
    const first = await holder.load();
    /** Replaces the file atomically, as editors and config managers do, so no reload sees half a file. */
    const replaceFile = async (text: string): Promise<void> => {
      const temp = join(dir, "policies.yaml.tmp");
      await writeFile(temp, text);
      await rename(temp, path);
    };
    holder.watch();
    holder.watch(); // idempotent
    try {
      await replaceFile(policyFile("10m", "deploy", "db"));
      const applied = await nextEvent(
        events,
        listeners,
        (e) => e.outcome === "applied" && e.trigger === "watch",
      );
      expect(applied).toMatchObject({ previousSha256: first.sha256 });
      expect(holder.current()?.policySet.policies).toHaveLength(2);

      const second = holder.current();
      await replaceFile(invalidFile);
      const rejected = await nextEvent(
        events,
        listeners,
        (e) => e.outcome === "rejected" && e.trigger === "watch",
      );
      expect(rejected).toMatchObject({ current: second });
      expect(holder.current()).toBe(second);
    } finally {
      await holder.close();
    }
  });
});

describe("createStaticPolicyHolder", () => {
  it("holds a fixed document", async () => {
    const holder = createStaticPolicyHolder(policyFile("10m", "deploy"), { clock: createManualClock(42) });
    const loaded = holder.current();
    expect(loaded).toMatchObject({ source: "(static)", loadTime: 42 });
    expect(await holder.load()).toBe(loaded);
    expect(await holder.reload({ dryRun: true })).toMatchObject({
      applied: false,
      changed: false,
      policyCount: 1,
    });
    holder.watch();
    await holder.close();
  });

  it("throws PolicyLoadError for an invalid document", () => {
    expect(() => createStaticPolicyHolder(invalidFile)).toThrow(PolicyLoadError);
  });
});
