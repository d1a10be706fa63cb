import { SpanKind, SpanStatusCode, type Tracer } from "@opentelemetry/api";
import type { Approval } from "../domain/types.js";
import type { ApprovalStore } from "../store/approval-store.js";
import { approvalIdAttribute } from "./rpc-interceptors.js";

/** The store methods that get a span, each with how to find the approval id in its arguments. */
const tracedMethods: Partial<Record<keyof ApprovalStore, (args: unknown[]) => string | undefined>> = {
  create: (args) => (args[0] as Approval).id,
  get: (args) => args[0] as string,
  compareAndSet: (args) => (args[0] as Approval).id,
  list: () => undefined,
  stats: () => undefined,
  dueForExpiry: () => undefined,
  countLineage: () => undefined,
  ping: () => undefined,
};

/** Wraps selected methods of a store, leaving the others (subscriptions, close, new ones) as they are. */
function decorate(
  store: ApprovalStore,
  wrap: (name: keyof ApprovalStore, method: (...args: unknown[]) => Promise<unknown>) => unknown,
  names: readonly (keyof ApprovalStore)[],
): ApprovalStore {
  const wrapped = new Map<PropertyKey, unknown>();
  for (const name of names) {
    const method = store[name] as unknown as (...args: unknown[]) => Promise<unknown>;
    wrapped.set(
      name,
      wrap(name, (...args) => method.apply(store, args)),
    );
  }
  return new Proxy(store, {
    get(target, prop) {
      if (wrapped.has(prop)) return wrapped.get(prop);
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * A store whose calls are spans (`store.get`, `store.compareAndSet`, …) with the approval id as an
 * attribute, children of the RPC (or scheduler run) that makes them. Used only when tracing is on.
 */
export function traceStore(store: ApprovalStore, tracer: Tracer): ApprovalStore {
  const names = Object.keys(tracedMethods) as (keyof ApprovalStore)[];
  return decorate(
    store,
    (name, call) =>
      (...args: unknown[]) =>
        tracer.startActiveSpan(`store.${name}`, { kind: SpanKind.CLIENT }, async (span) => {
          const id = tracedMethods[name]?.(args);
          if (id !== undefined) span.setAttribute(approvalIdAttribute, id);
          try {
            return await call(...args);
          } catch (err) {
            span.recordException(err as Error);
            span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
            throw err;
          } finally {
            span.end();
          }
        }),
    names,
  );
}

/**
 * The scheduler's view of the store: every `dueForExpiry` that answers (the first step of each scheduler
 * run) calls `onRun`, which feeds the "scheduler not running" alert.
 */
export function reportSchedulerRuns(store: ApprovalStore, onRun: () => void): ApprovalStore {
  return decorate(
    store,
    (_name, call) =>
      async (...args: unknown[]) => {
        const result = await call(...args);
        onRun();
        return result;
      },
    ["dueForExpiry"],
  );
}
