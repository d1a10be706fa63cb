import { createManualClock } from "../domain/clock.js";
import { createMemorySlackMessageStore } from "./memory-slack-message-store.js";
import { slackMessageStoreContract } from "./slack-message-store.contract.js";

slackMessageStoreContract("memory", async () => {
  const clock = createManualClock();
  return { store: createMemorySlackMessageStore({ clock }), advance: async (ms) => clock.advance(ms) };
});
