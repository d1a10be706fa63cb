/**
 * The behaviour every ApprovalStore adapter must have, as a reusable vitest suite. An adapter's test file
 * calls `describeApprovalStoreContract` with a factory of fresh, empty stores.
 */

import { monotonicFactory } from "ulid";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConflictError, ValidationError } from "../domain/errors.js";
import { canonicalJson } from "../domain/hashing.js";
import type { Approval, ApprovalState } from "../domain/types.js";
import type { ApprovalQuery, ApprovalStore } from "./approval-store.js";

const t0 = Date.UTC(2026, 0, 1);
const second = 1_000;
const hour = 3_600_000;

/** Makes approvals with time-sortable ids (ULIDs seeded with the create time). */
export function approvalFactory(): (fields?: Partial<Approval>) => Approval {
  const nextId = monotonicFactory();
  return (fields = {}) => {
    const createTime = fields.createTime ?? t0;
    const id = fields.id ?? nextId(createTime);
    return {
      id,
      action: "deploy.production",
      title: "Deploy api",
      justification: "",
      params: { service: "api", version: "1.2.3" },
      paramsSha256: "b".repeat(64),
      requester: "ci-bot",
      onBehalfOf: "alice@example.com",
      origin: { repo: "acme/api", branch: "main", pullRequest: "", runId: "42", links: [] },
      policyName: "production-deploy",
      policySha256: "a".repeat(64),
      rules: {
        name: "production-deploy",
        channel: "C-DEPLOY",
        dm: false,
        approvers: { users: ["U-ALICE"], groups: [] },
        superApprovers: [],
        requiredApprovals: 1,
        denyThreshold: 1,
        denyReasonRequired: false,
        stages: [],
        timeoutMs: hour,
        remindersMs: [],
        redaction: { mode: "none", keys: [] },
        overrides: { keys: [], maxKeys: 0, maxDiffBytes: 0, requestKeys: [] },
        rerequest: { allowed: false, cooldownMs: 0, maxPerDay: 0 },
      },
      state: "pending",
      votes: [],
      stages: [],
      edits: [],
      createTime,
      expireTime: createTime + hour,
      decideTime: 0,
      decidedBy: "",
      reason: "",
      adminOverride: false,
      lineageId: id,
      rerequestOf: "",
      overrides: {},
      version: 0,
      ...fields,
    };
  };
}

/** The stored approval after a decision. */
function decided(a: Approval, state: ApprovalState, by: string): Approval {
  return { ...a, state, decidedBy: by, decideTime: a.createTime + second };
}

/** Every page of a query, newest first, as the list of ids it visited. */
async function listAll(store: ApprovalStore, query: ApprovalQuery): Promise<string[]> {
  const ids: string[] = [];
  let pageToken = "";
  for (let pages = 0; pages < 1_000; pages++) {
    const page = await store.list({ ...query, pageToken });
    expect(page.approvals.length).toBeLessThanOrEqual(query.pageSize);
    ids.push(...page.approvals.map((a) => a.id));
    if (page.nextPageToken === "") return ids;
    pageToken = page.nextPageToken;
  }
  throw new Error("list never reached its last page");
}

/**
 * Registers the ApprovalStore contract for one adapter.
 * @param makeStore makes a fresh, empty store and a function that releases it
 */
export function describeApprovalStoreContract(
  name: string,
  makeStore: () => Promise<{ store: ApprovalStore; cleanup(): Promise<void> }>,
): void {
  describe(`ApprovalStore contract: ${name}`, () => {
    let store: ApprovalStore;
    let cleanup: () => Promise<void>;
    let make: (fields?: Partial<Approval>) => Approval;

    beforeEach(async () => {
      ({ store, cleanup } = await makeStore());
      make = approvalFactory();
    });

    afterEach(async () => {
      await cleanup();
    });

    /** Stores `count` approvals one second apart, oldest first. */
    async function seed(
      count: number,
      fields: (i: number) => Partial<Approval> = () => ({}),
    ): Promise<Approval[]> {
      const stored: Approval[] = [];
      for (let i = 0; i < count; i++) {
        stored.push((await store.create(make({ createTime: t0 + i * second, ...fields(i) }))).approval);
      }
      return stored;
    }

    describe("create and get", () => {
      it("stores a new approval as version 1 and publishes it", async () => {
        const approval = make();
        const ofId: Approval[] = [];
        const ofAll: Approval[] = [];
        store.subscribe(approval.id, (a) => ofId.push(a));
        store.subscribeAll((a) => ofAll.push(a));

        const result = await store.create(approval);
        expect(result.created).toBe(true);
        expect(result.approval).toEqual({ ...approval, version: 1 });
        expect(await store.get(approval.id)).toEqual({ ...approval, version: 1 });
        expect(ofId).toEqual([{ ...approval, version: 1 }]);
        expect(ofAll).toEqual([{ ...approval, version: 1 }]);
      });

      it("keeps params keys named __proto__, constructor or prototype as ordinary keys", async () => {
        const params = JSON.parse(
          '{"__proto__":{"image":"x"},"constructor":1,"prototype":[2],"nested":{"__proto__":"y"}}',
        ) as Approval["params"];
        const approval = make({ params });
        await store.create(approval);
        const stored = await store.get(approval.id);
        expect(Object.keys(stored?.params ?? {})).toEqual([
          "__proto__",
          "constructor",
          "prototype",
          "nested",
        ]);
        expect(canonicalJson(stored?.params ?? {})).toBe(canonicalJson(params));
      });

      it("returns the first approval for a retried create with the same key and fingerprint", async () => {
        const first = make();
        const retry = make();
        const published: Approval[] = [];
        store.subscribeAll((a) => published.push(a));

        const one = await store.create(first, { key: "ci-bot\u0000run-42", fingerprint: "f1" });
        const two = await store.create(retry, { key: "ci-bot\u0000run-42", fingerprint: "f1" });
        expect(one.created).toBe(true);
        expect(two).toEqual({ approval: one.approval, created: false });
        expect(await store.get(retry.id)).toBeUndefined();
        expect(published.map((a) => a.id)).toEqual([first.id]);
      });

      it("refuses a key reused with another fingerprint", async () => {
        const first = make();
        await store.create(first, { key: "k", fingerprint: "f1" });
        const other = make();
        await expect(store.create(other, { key: "k", fingerprint: "f2" })).rejects.toBeInstanceOf(
          ConflictError,
        );
        expect(await store.get(other.id)).toBeUndefined();
        expect((await store.get(first.id))?.version).toBe(1);
      });

      it("keeps approvals created without a key or with different keys apart", async () => {
        const a = await store.create(make());
        const b = await store.create(make());
        const c = await store.create(make(), { key: "k1", fingerprint: "f" });
        const d = await store.create(make(), { key: "k2", fingerprint: "f" });
        const ids = new Set([a, b, c, d].map((r) => r.approval.id));
        expect(ids.size).toBe(4);
        expect([a, b, c, d].every((r) => r.created)).toBe(true);
      });

      it("answers undefined for an unknown id", async () => {
        expect(await store.get(make().id)).toBeUndefined();
      });

      it("answers ping", async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });
    });

    describe("compareAndSet", () => {
      it("stores the next version when the expected version is current, and publishes it", async () => {
        const { approval } = await store.create(make());
        const ofId: Approval[] = [];
        const ofAll: Approval[] = [];
        store.subscribe(approval.id, (a) => ofId.push(a));
        store.subscribeAll((a) => ofAll.push(a));

        const stored = await store.compareAndSet(decided(approval, "approved", "U-ALICE"), 1);
        expect(stored).toMatchObject({
          id: approval.id,
          state: "approved",
          decidedBy: "U-ALICE",
          version: 2,
        });
        expect(await store.get(approval.id)).toEqual(stored);
        expect(ofId).toEqual([stored]);
        expect(ofAll).toEqual([stored]);

        const third = await store.compareAndSet({ ...(stored as Approval), reason: "noted" }, 2);
        expect(third?.version).toBe(3);
        expect(ofId.map((a) => a.version)).toEqual([2, 3]);
      });

      it("refuses a stale version, changes nothing and publishes nothing", async () => {
        const { approval } = await store.create(make());
        const winner = await store.compareAndSet(decided(approval, "approved", "U-ALICE"), 1);
        const published: Approval[] = [];
        store.subscribe(approval.id, (a) => published.push(a));
        store.subscribeAll((a) => published.push(a));

        expect(await store.compareAndSet(decided(approval, "denied", "U-BOB"), 1)).toBeUndefined();
        expect(await store.compareAndSet(decided(approval, "denied", "U-BOB"), 5)).toBeUndefined();
        expect(await store.get(approval.id)).toEqual(winner);
        expect(published).toEqual([]);
      });

      it("answers undefined for an approval that does not exist", async () => {
        const ghost = make();
        expect(await store.compareAndSet(ghost, 0)).toBeUndefined();
        expect(await store.compareAndSet(ghost, 1)).toBeUndefined();
        expect(await store.get(ghost.id)).toBeUndefined();
      });

      it("stops delivering to a listener once it unsubscribes", async () => {
        const { approval } = await store.create(make());
        const ofId: Approval[] = [];
        const ofAll: Approval[] = [];
        const offId = store.subscribe(approval.id, (a) => ofId.push(a));
        const offAll = store.subscribeAll((a) => ofAll.push(a));
        const v2 = await store.compareAndSet({ ...approval, reason: "one" }, 1);
        offId();
        offAll();
        await store.compareAndSet({ ...approval, reason: "two" }, 2);
        await store.create(make());
        expect(ofId).toEqual([v2]);
        expect(ofAll).toEqual([v2]);
      });

      it("delivers only the subscribed approval to a per-approval listener", async () => {
        const a = (await store.create(make())).approval;
        const b = (await store.create(make())).approval;
        const ofA: Approval[] = [];
        store.subscribe(a.id, (x) => ofA.push(x));
        await store.compareAndSet({ ...b, reason: "b" }, 1);
        const a2 = await store.compareAndSet({ ...a, reason: "a" }, 1);
        expect(ofA).toEqual([a2]);
      });

      it("lets exactly one of many concurrent writers from the same version win", async () => {
        const { approval } = await store.create(make());
        const writers = Array.from({ length: 25 }, (_, i) => decided(approval, "approved", `U-${i}`));
        const results = await Promise.all(writers.map((next) => store.compareAndSet(next, 1)));
        const winners = results.filter((r): r is Approval => r !== undefined);
        expect(winners).toHaveLength(1);
        const stored = await store.get(approval.id);
        expect(stored?.version).toBe(2);
        expect(stored?.decidedBy).toBe(winners[0]?.decidedBy);
      });

      it("lets exactly one of many identical concurrent writers win (same content, same millisecond)", async () => {
        const { approval } = await store.create(make());
        const published: Approval[] = [];
        store.subscribe(approval.id, (a) => published.push(a));
        const next = decided(approval, "approved", "admin");
        const results = await Promise.all(
          Array.from({ length: 24 }, () => store.compareAndSet({ ...next }, 1)),
        );
        expect(results.filter((r) => r !== undefined)).toHaveLength(1);
        expect((await store.get(approval.id))?.version).toBe(2);
        expect(published.filter((a) => a.version === 2)).toHaveLength(1);
      });
    });

    describe("list", () => {
      it("lists newest first", async () => {
        const stored = await seed(5);
        const page = await store.list({ pageSize: 100 });
        expect(page.approvals.map((a) => a.id)).toEqual(stored.map((a) => a.id).reverse());
        expect(page.nextPageToken).toBe("");
      });

      it("lists the latest stored version", async () => {
        const [a] = await seed(1);
        const v2 = await store.compareAndSet(decided(a as Approval, "denied", "U-BOB"), 1);
        expect((await store.list({ pageSize: 10 })).approvals).toEqual([v2]);
      });

      it("filters by state, action and requester", async () => {
        const stored = await seed(6, (i) => ({
          action: i % 2 === 0 ? "deploy.production" : "db.migrate",
          requester: i < 3 ? "ci-bot" : "release-bot",
        }));
        const ids = stored.map((a) => a.id);
        const s1 = stored[1] as Approval;
        const s4 = stored[4] as Approval;
        await store.compareAndSet(decided(s1, "approved", "U-ALICE"), 1);
        await store.compareAndSet(decided(s4, "approved", "U-ALICE"), 1);

        const idsOf = async (q: Omit<ApprovalQuery, "pageSize">) => listAll(store, { pageSize: 100, ...q });
        expect(await idsOf({ state: "approved" })).toEqual([ids[4], ids[1]]);
        expect(await idsOf({ state: "pending" })).toEqual([ids[5], ids[3], ids[2], ids[0]]);
        expect(await idsOf({ state: "expired" })).toEqual([]);
        expect(await idsOf({ action: "db.migrate" })).toEqual([ids[5], ids[3], ids[1]]);
        expect(await idsOf({ requester: "release-bot" })).toEqual([ids[5], ids[4], ids[3]]);
        expect(await idsOf({ action: "deploy.production", requester: "ci-bot", state: "pending" })).toEqual([
          ids[2],
          ids[0],
        ]);
      });

      it("bounds the create time: createdAfter inclusive, createdBefore exclusive", async () => {
        const ids = (await seed(5)).map((a) => a.id);
        const idsOf = async (q: Omit<ApprovalQuery, "pageSize">) => listAll(store, { pageSize: 100, ...q });
        expect(await idsOf({ createdAfter: t0 + 2 * second })).toEqual([ids[4], ids[3], ids[2]]);
        expect(await idsOf({ createdBefore: t0 + 2 * second })).toEqual([ids[1], ids[0]]);
        expect(await idsOf({ createdAfter: t0 + second, createdBefore: t0 + 3 * second })).toEqual([
          ids[2],
          ids[1],
        ]);
        expect(await idsOf({ createdAfter: t0 + 2 * second, createdBefore: t0 + 2 * second })).toEqual([]);
      });

      it("pages through every match exactly once, even when approvals are created between pages", async () => {
        const stored = await seed(23, (i) => ({ action: i % 3 === 0 ? "db.migrate" : "deploy.production" }));
        const idsMatching = (action?: string) =>
          stored
            .filter((a) => action === undefined || a.action === action)
            .map((a) => a.id)
            .reverse();
        let later = 0;

        for (const [pageSize, action] of [
          [5, undefined],
          [3, "deploy.production"],
          [2, "db.migrate"],
          [1, "db.migrate"],
          [23, undefined],
        ] as const) {
          const expected = idsMatching(action);
          const visited: string[] = [];
          let pageToken = "";
          for (;;) {
            const query: ApprovalQuery = { pageSize, pageToken, ...(action === undefined ? {} : { action }) };
            const page = await store.list(query);
            expect(page.approvals.length).toBeLessThanOrEqual(pageSize);
            visited.push(...page.approvals.map((a) => a.id));
            if (page.nextPageToken === "") break;
            // The same token gives the same page.
            expect((await store.list({ ...query, pageToken: page.nextPageToken })).approvals).toEqual(
              (await store.list({ ...query, pageToken: page.nextPageToken })).approvals,
            );
            // A newer approval created meanwhile does not shift the pages.
            const newer = make({
              createTime: t0 + hour + later++ * second,
              action: action ?? "deploy.production",
            });
            stored.push((await store.create(newer)).approval);
            pageToken = page.nextPageToken;
          }
          expect(visited).toEqual(expected);
        }
      });

      it("refuses a page token it did not make, naming page_token", async () => {
        await seed(3);
        for (const pageToken of ["not-a-token", Buffer.from("v2:abc").toString("base64url"), "%%%"]) {
          const err = await store.list({ pageSize: 2, pageToken }).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err).toBeInstanceOf(ValidationError);
          expect((err as ValidationError).violations.map((v) => v.field)).toEqual(["page_token"]);
        }
      });
    });

    describe("stats", () => {
      it("counts an empty store", async () => {
        const stats = await store.stats();
        expect(stats.counts).toEqual({ pending: 0, approved: 0, denied: 0, expired: 0, cancelled: 0 });
        expect(stats.oldestPending).toBeUndefined();
      });

      it("counts approvals by state and names the oldest pending one", async () => {
        const stored = await seed(8);
        const states: ApprovalState[] = [
          "approved",
          "pending",
          "pending",
          "denied",
          "expired",
          "cancelled",
          "denied",
        ];
        for (const [i, state] of states.entries()) {
          if (state !== "pending") await store.compareAndSet(decided(stored[i] as Approval, state, "x"), 1);
        }
        const stats = await store.stats();
        expect(stats.counts).toEqual({ pending: 3, approved: 1, denied: 2, expired: 1, cancelled: 1 });
        expect(stats.oldestPending?.id).toBe(stored[1]?.id);

        await store.compareAndSet(decided(stored[1] as Approval, "approved", "U-ALICE"), 1);
        expect((await store.stats()).oldestPending?.id).toBe(stored[2]?.id);
      });
    });

    describe("dueForExpiry", () => {
      it("returns pending approvals at or after their deadline, soonest first, within the limit", async () => {
        const a = (await store.create(make({ expireTime: t0 + 5 * second }))).approval;
        const b = (await store.create(make({ expireTime: t0 + 2 * second }))).approval;
        const c = (await store.create(make({ expireTime: t0 + 9 * second }))).approval;
        await store.create(make({ expireTime: t0 + second, state: "denied", decidedBy: "policy" }));
        const e = (await store.create(make({ expireTime: t0 + 1_500 }))).approval;
        await store.compareAndSet(decided(e, "approved", "U-ALICE"), 1);

        expect(await store.dueForExpiry(t0 + 2 * second - 1, 10)).toEqual([]);
        expect(await store.dueForExpiry(t0 + 2 * second, 10)).toEqual([b.id]);
        expect(await store.dueForExpiry(t0 + 5 * second, 10)).toEqual([b.id, a.id]);
        expect(await store.dueForExpiry(t0 + 5 * second, 1)).toEqual([b.id]);
        expect(await store.dueForExpiry(t0 + hour, 10)).toEqual([b.id, a.id, c.id]);
        expect(await store.dueForExpiry(t0 + hour, 2)).toEqual([b.id, a.id]);
      });

      it("keeps returning an approval until it is no longer pending", async () => {
        const a = (await store.create(make({ expireTime: t0 + second }))).approval;
        const b = (await store.create(make({ expireTime: t0 + 2 * second }))).approval;
        expect(await store.dueForExpiry(t0 + hour, 10)).toEqual([a.id, b.id]);
        // Nothing expired them (say the expiring replica crashed): they are still due.
        expect(await store.dueForExpiry(t0 + hour, 10)).toEqual([a.id, b.id]);
        // A vote that leaves it pending does not take it off the list either.
        const a2 = await store.compareAndSet({ ...a, reason: "voted" }, 1);
        expect(await store.dueForExpiry(t0 + hour, 10)).toEqual([a.id, b.id]);
        await store.compareAndSet(decided(a2 as Approval, "expired", "system"), 2);
        expect(await store.dueForExpiry(t0 + hour, 10)).toEqual([b.id]);
      });
    });

    describe("countLineage", () => {
      it("counts the approvals of a lineage created at or after a time", async () => {
        const first = (await store.create(make({ createTime: t0 }))).approval;
        await store.create(make({ createTime: t0 + hour, lineageId: first.id, rerequestOf: first.id }));
        await store.create(make({ createTime: t0 + 3 * hour, lineageId: first.id, rerequestOf: first.id }));
        const other = (await store.create(make({ createTime: t0 + 3 * hour }))).approval;

        expect(await store.countLineage(first.id, t0)).toBe(3);
        expect(await store.countLineage(first.id, t0 + hour)).toBe(2);
        expect(await store.countLineage(first.id, t0 + hour + 1)).toBe(1);
        expect(await store.countLineage(first.id, t0 + 4 * hour)).toBe(0);
        expect(await store.countLineage(other.id, t0)).toBe(1);
        expect(await store.countLineage(make().id, t0)).toBe(0);
      });
    });

    describe("retention: dueForPurge, purge and restore", () => {
      it("names terminal approvals by decide time, oldest first, and purges one only at its version", async () => {
        const a = (await store.create(make({ createTime: t0 }))).approval;
        const b = (await store.create(make({ createTime: t0 + second }))).approval;
        const pending = (await store.create(make({ createTime: t0 + 2 * second }))).approval;
        const b2 = (await store.compareAndSet(
          { ...decided(b, "denied", "U-BOB"), decideTime: t0 + hour },
          1,
        )) as Approval;
        const a2 = (await store.compareAndSet(
          { ...decided(a, "approved", "U-ALICE"), decideTime: t0 + 2 * hour },
          1,
        )) as Approval;

        expect(await store.dueForPurge(t0 + hour - 1, 10)).toEqual([]);
        expect(await store.dueForPurge(t0 + 2 * hour, 10)).toEqual([
          { approval: b2, archived: false },
          { approval: a2, archived: false },
        ]);
        expect(await store.dueForPurge(t0 + 2 * hour, 1)).toEqual([{ approval: b2, archived: false }]);

        expect(await store.purge(b.id, 1)).toBe(false);
        expect(await store.purge(b.id, 2)).toBe(true);
        expect(await store.purge(b.id, 2)).toBe(false);
        expect(await store.get(b.id)).toBeUndefined();
        expect(await store.dueForPurge(t0 + 2 * hour, 10)).toEqual([{ approval: a2, archived: false }]);
        expect(await listAll(store, { pageSize: 10 })).toEqual([pending.id, a.id]);
        expect(await listAll(store, { pageSize: 10, state: "denied" })).toEqual([]);
        expect(await store.countLineage(b.lineageId, t0)).toBe(0);
        expect((await store.stats()).counts).toMatchObject({ denied: 0, approved: 1, pending: 1 });
      });

      it("forgets the idempotency key of a purged approval", async () => {
        const first = (await store.create(make(), { key: "k", fingerprint: "f" })).approval;
        const done = (await store.compareAndSet(decided(first, "approved", "U-ALICE"), 1)) as Approval;
        expect(await store.purge(first.id, done.version)).toBe(true);
        const again = await store.create(make(), { key: "k", fingerprint: "f" });
        expect(again.created).toBe(true);
        expect(again.approval.id).not.toBe(first.id);
      });

      it("restores an archived approval once, newer versions only, queryable and published", async () => {
        const a = (await store.create(make({ action: "db.migrate" }))).approval;
        const done = (await store.compareAndSet(decided(a, "approved", "U-ALICE"), 1)) as Approval;
        expect(await store.purge(a.id, 2)).toBe(true);
        const published: Approval[] = [];
        store.subscribeAll((x) => published.push(x));

        expect(await store.restore(done)).toBe(true);
        expect(await store.restore(done)).toBe(false);
        expect(await store.restore({ ...done, version: 1, state: "pending" })).toBe(false);
        expect(await store.get(a.id)).toEqual(done);
        expect(await listAll(store, { pageSize: 10, action: "db.migrate", state: "approved" })).toEqual([
          a.id,
        ]);
        expect(published).toEqual([done]);
        const due = await store.dueForPurge(Number.MAX_SAFE_INTEGER, 10);
        expect(due).toEqual([{ approval: done, archived: true }]);
      });

      it("restores a newer version over an older one (an archive replayed onto an older snapshot)", async () => {
        const a = (await store.create(make({ expireTime: t0 + hour }))).approval;
        const later = { ...decided(a, "denied", "U-BOB"), version: 2 };
        expect(await store.restore(later)).toBe(true);
        expect(await store.get(a.id)).toEqual(later);
        expect(await store.dueForExpiry(t0 + 2 * hour, 10)).toEqual([]);
        expect(await listAll(store, { pageSize: 10, state: "pending" })).toEqual([]);
        expect(await listAll(store, { pageSize: 10, state: "denied" })).toEqual([a.id]);
        expect((await store.stats()).counts).toMatchObject({ pending: 0, denied: 1 });
      });
    });
  });
}
