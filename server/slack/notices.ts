import type { Approval } from "../domain/types.js";
import type { SlackNotice } from "./outbound-queue.js";

/**
 * The reminders and the escalation due for an approval at `now`: every policy offset from its creation
 * that has passed, before it expires, while it is pending. Pure: the gateway hands each one to the queue
 * once, and the queue's records make sure each is posted once.
 */
export function dueNotices(a: Approval, now: number): SlackNotice[] {
  if (a.state !== "pending") return [];
  const due: SlackNotice[] = [];
  a.rules.remindersMs.forEach((offset, i) => {
    const at = a.createTime + offset;
    if (at <= now && at < a.expireTime) due.push(`reminder:${i}`);
  });
  const escalation = a.rules.escalation;
  if (escalation !== undefined) {
    const at = a.createTime + escalation.afterMs;
    if (at <= now && at < a.expireTime) due.push("escalation");
  }
  return due;
}
