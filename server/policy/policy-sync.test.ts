import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../../test/support/wait.js";
import { createManualClock } from "../domain/clock.js";
import { UnavailableError } from "../domain/errors.js";
import { createPolicyHolder, type PolicyHolder } from "./policy-holder.js";
import {
  createPolicySync,
  type PolicySync,
  type PolicySyncPort,
  type ReplicaPolicyReport,
  type SharedPolicySet,
} from "./policy-sync.js";

function policyFile(...names: string[]): string {
  const policies = names
    .map((name) => `  - { name: ${name}, match: "${name}.*", approvers: { users: [U1] } }`)
    .join("\n");
  return `version: 1\ndefaults: { channel: C0 }\npolicies:\n${policies}\n`;
}

/** What a Redis holds for policy sync, in memory, with a switch to make it unreachable. */
function sharedStore() {
  let set: SharedPolicySet | undefined;
  let counter = 0;
  let down = false;
  const reports = new Map<string, ReplicaPolicyReport>();
  const listeners = new Set<(generation: number) => void>();
  const reachable = () => {
    if (down) throw new UnavailableError("the approval store is unavailable (test)");
  };
  return {
    get set() {
      return set;
    },
    reports,
    setDown(value: boolean) {
      down = value;
    },
    /** Loses everything, as a Redis restarted without persistence. */
    flush() {
      set = undefined;
      counter = 0;
      reports.clear();
    },
    port(): PolicySyncPort {
      let own: ((generation: number) => void) | undefined;
      return {
        read: async () => {
          reachable();
          return set;
        },
        publish: async (published) => {
          reachable();
          set = { ...published, generation: ++counter };
          for (const listener of listeners) listener(counter);
          return set;
        },
        subscribe: async (listener) => {
          own = listener;
          listeners.add(listener);
        },
        report: async (report) => {
          reachable();
          reports.set(report.replica, report);
        },
        reports: async () => {
          reachable();
          return [...reports.values()];
        },
        forget: async (names) => {
          reachable();
          for (const name of names) reports.delete(name);
        },
        close: async () => {
          if (own !== undefined) listeners.delete(own);
        },
      };
    },
  };
}

const silent = { info: () => {}, warn: () => {}, error: () => {} };

describe("createPolicySync", () => {
  let dir: string;
  const clock = createManualClock(1_000_000);
  const syncs: PolicySync[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "countersign-sync-"));
  });

  afterEach(async () => {
    await Promise.all(syncs.splice(0).map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  /** A replica: its own policy file and holder, and its sync through `store`. */
  async function replica(name: string, store: ReturnType<typeof sharedStore>, text: string) {
    const path = join(dir, `${name}.yaml`);
    await writeFile(path, text);
    let sync: PolicySync | undefined;
    const holder: PolicyHolder = createPolicyHolder({
      path,
      clock,
      onReload: (event) => sync?.reloaded(event),
    });
    await holder.load();
    sync = createPolicySync({
      holder,
      port: store.port(),
      replica: name,
      clock,
      heartbeatMs: 10,
      log: silent,
    });
    syncs.push(sync);
    return { path, holder, sync };
  }

  it("publishes the file at start when the store has no set", async () => {
    const store = sharedStore();
    const a = await replica("a", store, policyFile("deploy"));
    a.sync.start();
    await waitFor(() => store.set !== undefined, 2_000, "A publishes");
    expect(store.set).toMatchObject({
      sha256: a.holder.current()?.sha256,
      generation: 1,
      publishedBy: "a",
      source: a.path,
      text: policyFile("deploy"),
    });
  });

  it("publishes a set again when the store lost it, so the replicas that start later get it", async () => {
    const store = sharedStore();
    const a = await replica("a", store, policyFile("deploy"));
    a.sync.start();
    await waitFor(() => store.set !== undefined, 2_000, "A publishes");
    store.flush();
    await waitFor(() => store.set !== undefined, 2_000, "A publishes again");
    expect(store.set?.sha256).toBe(a.holder.current()?.sha256);
    await waitFor(() => store.reports.has("a"), 2_000, "A reports again");
  });

  it("reports a reload it could not publish as an error, and publishes it with a later heartbeat", async () => {
    const store = sharedStore();
    const a = await replica("a", store, policyFile("deploy"));
    a.sync.start();
    await waitFor(() => store.set !== undefined, 2_000, "A publishes");
    store.setDown(true);
    await writeFile(a.path, policyFile("deploy", "db"));
    await expect(a.sync.reload()).rejects.toBeInstanceOf(UnavailableError);
    // In force here all the same.
    expect(a.holder.current()?.policySet.policies).toHaveLength(2);
    store.setDown(false);
    await waitFor(() => store.set?.sha256 === a.holder.current()?.sha256, 2_000, "the late publication");
    expect(store.set?.generation).toBe(2);
  });

  it("tries a set it cannot adopt once, not at every heartbeat, and the next generation again", async () => {
    const store = sharedStore();
    const a = await replica("a", store, policyFile("deploy"));
    const b = await replica("b", store, policyFile("deploy"));
    a.sync.start();
    await waitFor(() => store.set !== undefined, 2_000, "A publishes");
    b.sync.start();
    await waitFor(() => store.reports.get("b")?.generation === 1, 2_000, "B in step");
    let attempts = 0;
    const adopt = b.holder.adopt.bind(b.holder);
    b.holder.adopt = (text, source) => {
      attempts++;
      return text.includes("refused")
        ? Promise.reject(new Error("refused by this release"))
        : adopt(text, source);
    };
    await writeFile(a.path, policyFile("deploy", "refused"));
    await a.sync.reload();
    await waitFor(() => store.reports.get("b")?.error !== undefined, 2_000, "B's error");
    expect(store.reports.get("b")?.error).toBe(
      `cannot adopt generation 2 (${store.set?.sha256.slice(0, 12)}, published by a): refused by this release`,
    );
    const heartbeats = (store.reports.get("b")?.reportTime ?? 0) + 1;
    clock.advance(1);
    await waitFor(() => (store.reports.get("b")?.reportTime ?? 0) >= heartbeats, 2_000, "more heartbeats");
    expect(attempts).toBe(1);
    await writeFile(a.path, policyFile("deploy", "db"));
    await a.sync.reload();
    await waitFor(() => store.reports.get("b")?.generation === 3, 2_000, "B adopts generation 3");
    expect(attempts).toBe(2);
    expect(store.reports.get("b")?.error).toBeUndefined();
    expect((await b.sync.status()).disagreement).toBeUndefined();
  });

  it("leaves replicas that stopped reporting out of the agreement, marked stale, and forgets them later", async () => {
    const store = sharedStore();
    const a = await replica("a", store, policyFile("deploy"));
    a.sync.start();
    await waitFor(() => store.reports.has("a"), 2_000, "A reports");
    store.reports.set("gone", {
      replica: "gone",
      sha256: "f".repeat(64),
      generation: 0,
      reportTime: clock.now(),
    });
    const disagreeing = await a.sync.status();
    expect(disagreeing.disagreement).toContain(`gone has ffffffffffff (generation 0)`);
    expect(disagreeing.disagreement).toContain(`a has ${a.holder.current()?.sha256.slice(0, 12)}`);
    clock.advance(31);
    const status = await a.sync.status();
    expect(status.disagreement).toBeUndefined();
    expect(status.replicas.map((r) => [r.replica, r.stale])).toEqual([
      ["a", false],
      ["gone", true],
    ]);
    clock.advance(10 * 60_000);
    await waitFor(() => !store.reports.has("gone"), 2_000, "the stale report forgotten");
  });

  it("withdraws its report when it closes", async () => {
    const store = sharedStore();
    const a = await replica("a", store, policyFile("deploy"));
    a.sync.start();
    await waitFor(() => store.reports.has("a"), 2_000, "A reports");
    await a.sync.close();
    expect(store.reports.has("a")).toBe(false);
  });
});
