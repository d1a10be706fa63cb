/**
 * The redaction rule: which params of an approval people may see, as the policy's `redaction` says. One
 * rule for every place that shows params (the Slack message and modals, the audit log), so a hidden
 * param is hidden everywhere.
 */
import type { Redaction } from "./types.js";

/**
 * True when approvers may see param `key` under `redaction`: every key (`none`), no key (`all`), only
 * the listed keys (`allowlist`), or every key but the listed ones (`denylist`).
 */
export function isParamVisible(key: string, redaction: Redaction): boolean {
  switch (redaction.mode) {
    case "none":
      return true;
    case "all":
      return false;
    case "allowlist":
      return redaction.keys.includes(key);
    case "denylist":
      return !redaction.keys.includes(key);
  }
}
