import { EventEmitter, on } from "node:events";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { type HostedService, hostService } from "./grpc-server.js";

/** A `grpc.health.v1` serving status, as grpc-health-check names it. */
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING";

/** Anything that takes serving statuses (grpc-health-check's `HealthImplementation`, `HealthStatus`). */
export interface HealthStatusSink {
  setStatus(service: string, status: ServingStatus): void;
}

/**
 * The serving status of the server and its services, shared by both ports: the gRPC port's
 * grpc-health-check implementation mirrors it and the Connect port serves it (`healthService`).
 */
export class HealthStatus implements HealthStatusSink {
  private readonly statuses = new Map<string, ServingStatus>([["", "SERVING"]]);
  private readonly changes = new EventEmitter();

  constructor(private readonly mirrors: readonly HealthStatusSink[] = []) {
    this.changes.setMaxListeners(0);
  }

  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const mirror of this.mirrors) mirror.setStatus(service, status);
    this.changes.emit("change", service);
  }

  /** The status of a service (`""`: the server), undefined for a service it does not know. */
  status(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Every known service and its status. */
  all(): ReadonlyMap<string, ServingStatus> {
    return this.statuses;
  }

  /** The names of services whose status is set, until `signal` aborts. */
  changed(signal: AbortSignal): AsyncIterable<unknown[]> {
    return on(this.changes, "change", { signal }) as AsyncIterable<unknown[]>;
  }
}

const wire: Record<ServingStatus, Status> = {
  UNKNOWN: Status.UNKNOWN,
  SERVING: Status.SERVING,
  NOT_SERVING: Status.NOT_SERVING,
};

/** `grpc.health.v1.Health` (Check, List, Watch) over a `HealthStatus`, for the Connect port. */
export function healthService(health: HealthStatus): HostedService {
  return hostService(Health, {
    check(req) {
      const status = health.status(req.service);
      if (status === undefined) throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      return { status: wire[status] };
    },
    list() {
      const statuses: Record<string, { status: Status }> = {};
      for (const [name, status] of health.all()) statuses[name] = { status: wire[status] };
      return { statuses };
    },
    async *watch(req, ctx: HandlerContext) {
      const current = () => {
        const status = health.status(req.service);
        return status === undefined ? Status.SERVICE_UNKNOWN : wire[status];
      };
      let last = current();
      yield { status: last };
      try {
        for await (const [service] of health.changed(ctx.signal)) {
          if (service !== req.service || current() === last) continue;
          last = current();
          yield { status: last };
        }
      } catch (err) {
        if (!ctx.signal.aborted) throw err;
      }
    },
  });
}
