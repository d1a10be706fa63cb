import { UnavailableError } from "../domain/errors.js";
import type { ApprovalStore } from "../store/approval-store.js";
import type { AuditHealth } from "./audit-log.js";

/** The store calls that change an approval's state: each one is audited. */
const stateChanges = new Set<PropertyKey>(["create", "compareAndSet"]);

/**
 * The error of a state change refused while the audit log cannot be written: UNAVAILABLE (safe to retry
 * once the disk has space again), naming the reason.
 */
export function auditUnavailableError(reason: string): UnavailableError {
  return new UnavailableError(`audit log unavailable: ${reason}`);
}

/**
 * A store that refuses every state change (create, compare-and-set) with UNAVAILABLE while the audit
 * log cannot be written, so that no approval is created, decided, cancelled or expired without its audit
 * line. Reads, watches and the other calls pass through. Checked before each write, so it recovers as
 * soon as the audit log does.
 */
export function gateStateChanges(store: ApprovalStore, health: AuditHealth): ApprovalStore {
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== "function") return value;
      const method = value as (...args: unknown[]) => unknown;
      if (!stateChanges.has(prop)) return method.bind(target);
      return (...args: unknown[]) => {
        const reason = health.unavailableReason();
        if (reason !== undefined) return Promise.reject(auditUnavailableError(reason));
        return method.apply(target, args);
      };
    },
  });
}
