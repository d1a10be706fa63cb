import type { ServiceImpl } from "@connectrpc/connect";
import type { EchoService } from "../../gen/countersign/bench/v1/echo_pb.js";
import { ValidationError } from "../domain/errors.js";
import { callerKey } from "../services/caller.js";
import { toConnectError } from "../services/errors.js";

/** Messages `EchoStream` sends when the request does not say. */
export const defaultEchoStreamCount = 10;

/** Most messages one `EchoStream` call may ask for. */
export const maxEchoStreamCount = 1000;

/**
 * `countersign.bench.v1.EchoService`: the floor of the benchmark. It does no product work, so a call
 * costs what the transport and the interceptors cost; the server hosts it only with `--bench-echo`.
 */
export function createEchoService(): ServiceImpl<typeof EchoService> {
  return {
    echo: (req, ctx) => ({ payload: req.payload, identity: ctx.values.get(callerKey)?.identity ?? "" }),

    async *echoStream(req, ctx) {
      if (req.count > maxEchoStreamCount)
        throw toConnectError(
          ValidationError.of("count", `is ${req.count}; the most is ${maxEchoStreamCount}`),
        );
      const count = req.count === 0 ? defaultEchoStreamCount : req.count;
      for (let sequence = 0; sequence < count && !ctx.signal.aborted; sequence++) {
        yield { payload: req.payload, sequence };
      }
    },
  };
}
