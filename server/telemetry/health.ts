import type { HealthStatusSink } from "../transport/health-service.js";
import { evaluateReadiness, type ReadinessCheck, type ReadinessResult } from "../transport/ops-server.js";

/** Options of `createReadinessMonitor`. */
export interface ReadinessMonitorOptions {
  /** The same checks as `/readyz`. */
  checks: Record<string, ReadinessCheck>;
  /** The gRPC health service to keep in step. */
  health: HealthStatusSink;
  /** Services whose status follows readiness, besides the overall status (""). */
  services: readonly string[];
  /** How often the checks run when nobody asks `/readyz`. @default 5000 */
  intervalMs?: number;
  /** Called when readiness changes. */
  onChange?: (result: ReadinessResult) => void;
}

/** Keeps `grpc.health.v1` in step with readiness. */
export interface ReadinessMonitor {
  /** Applies a readiness result (from `/readyz` or the periodic check). */
  report(result: ReadinessResult): void;
  /** Runs the checks now and applies the result. */
  check(): Promise<ReadinessResult>;
  /** Runs the checks now and then every `intervalMs`. */
  start(): void;
  /** Stops them and reports NOT_SERVING (the server is going away). */
  stop(): void;
}

/**
 * `grpc.health.v1` status following readiness: SERVING while every readiness check passes, NOT_SERVING
 * otherwise and after `stop()`. The checks run every `intervalMs` and on every `/readyz`, so gRPC
 * health probes (Kubernetes `grpc` probes) see what `/readyz` sees.
 */
export function createReadinessMonitor(options: ReadinessMonitorOptions): ReadinessMonitor {
  const { health } = options;
  const names = ["", ...options.services];
  let ready: boolean | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const set = (serving: boolean) => {
    for (const name of names) health.setStatus(name, serving ? "SERVING" : "NOT_SERVING");
  };
  const report = (result: ReadinessResult) => {
    if (stopped || result.ready === ready) return;
    ready = result.ready;
    set(result.ready);
    options.onChange?.(result);
  };
  const check = async () => {
    const result = await evaluateReadiness(options.checks);
    report(result);
    return result;
  };
  let checking = false;

  return {
    report,
    check,
    start() {
      if (timer !== undefined || stopped) return;
      const run = () => {
        if (checking) return;
        checking = true;
        void check().finally(() => {
          checking = false;
        });
      };
      run();
      timer = setInterval(run, options.intervalMs ?? 5_000);
      timer.unref();
    },
    stop() {
      stopped = true;
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      set(false);
    },
  };
}

/**
 * The `policies` readiness check of a replica that shares its policies through the store: "ok" while
 * every live replica has the same set, else a note naming each replica and its hash (and why one could
 * not adopt the shared set). It never makes the replica unready: a reload reaches the replicas one after
 * the other, and a set that an older release refuses (during a rolling upgrade) would otherwise take
 * every replica that runs it out of the load balancer at once. The disagreement is for operators to see
 * (here, in `GetPolicies` and the log) and fix. A store that cannot be read is the `store` check's to
 * report.
 */
export function policyAgreementReadiness(agreement: {
  status(): Promise<{ disagreement: string | undefined }>;
}): ReadinessCheck {
  return async () => {
    try {
      const { disagreement } = await agreement.status();
      return disagreement === undefined ? undefined : { note: disagreement };
    } catch (err) {
      return { note: `cannot compare with the other replicas: ${(err as Error).message}` };
    }
  };
}
