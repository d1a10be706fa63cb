import { describe, expect, it } from "vitest";
import type { SlackMessageRecord, SlackMessageStore } from "./slack-message-store.js";

const record = (key: string, ts = "1700000000.000100"): SlackMessageRecord => ({
  key,
  channel: "C0PROD",
  ts,
  attemptedAt: 1_700_000_000_000,
  version: 1,
});

/**
 * The behaviour every SlackMessageStore adapter must have. Call it from the adapter's test file with a
 * factory that makes a fresh, empty store; `advance` moves the adapter's notion of time.
 */
export function slackMessageStoreContract(
  name: string,
  make: () => Promise<{ store: SlackMessageStore; advance: (ms: number) => Promise<void> }>,
): void {
  describe(`SlackMessageStore contract: ${name}`, () => {
    it("stores records per approval, replacing by key", async () => {
      const { store } = await make();
      expect(await store.list("A1")).toEqual([]);
      await store.put("A1", record("request:C0PROD", ""));
      await store.put("A1", record("request:C0PROD"));
      await store.put("A1", { ...record("reminder:0:C0PROD"), version: 0 });
      await store.put("A2", record("request:C0OTHER"));
      const list = await store.list("A1");
      expect(list.map((r) => r.key).sort()).toEqual(["reminder:0:C0PROD", "request:C0PROD"]);
      expect(list.find((r) => r.key === "request:C0PROD")).toEqual(record("request:C0PROD"));
      await store.remove("A1", "reminder:0:C0PROD");
      expect((await store.list("A1")).map((r) => r.key)).toEqual(["request:C0PROD"]);
      expect(await store.list("A2")).toHaveLength(1);
      await store.close();
    });

    it("forgets an approval's records once they expire", async () => {
      const { store, advance } = await make();
      await store.put("A1", record("request:C0PROD"));
      await store.expire("A1", 1_000);
      expect(await store.list("A1")).toHaveLength(1);
      await advance(1_100);
      expect(await store.list("A1")).toEqual([]);
      await store.close();
    });

    it("lists the approvals whose records have not been expired", async () => {
      const { store } = await make();
      await store.put("A1", record("request:C0PROD"));
      await store.put("A2", record("request:C0PROD"));
      await store.put("A3", record("request:C0PROD"));
      await store.expire("A2", 60_000);
      expect((await store.openApprovals(10)).sort()).toEqual(["A1", "A3"]);
      expect(await store.openApprovals(1)).toHaveLength(1);
      await store.close();
    });

    it("returns copies: changing a listed record does not change the store", async () => {
      const { store } = await make();
      await store.put("A1", record("request:C0PROD"));
      const [listed] = await store.list("A1");
      if (listed !== undefined) listed.version = 99;
      expect((await store.list("A1"))[0]?.version).toBe(1);
      await store.close();
    });
  });
}
