/**
 * gRPC spans through `@opentelemetry/instrumentation-grpc`.
 *
 * The instrumentation patches `@grpc/grpc-js` through a `require` hook, so it only sees grpc-js when grpc-js
 * is loaded with `require` *after* the instrumentation is enabled. An ES module `import` of grpc-js
 * bypasses the hook, and ES imports are all evaluated before any code of the importing module runs. So
 * `instrumentGrpc()` must run before any module that imports grpc-js is evaluated: from a module imported
 * first (the CLI's `tracing-preload.ts`), or from `node --import`. It then loads grpc-js with `require`,
 * which patches it; every later `import` of grpc-js gets the same, patched module from the require cache.
 * This file must not import grpc-js itself.
 */
import { createRequire } from "node:module";
import { registerInstrumentations } from "@opentelemetry/instrumentation";
import { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";

const require = createRequire(import.meta.url);
let instrumentation: GrpcInstrumentation | undefined;

/**
 * Enables the gRPC instrumentation (idempotent) and loads grpc-js so that it is patched.
 * @returns whether grpc-js is instrumented (false when it was loaded before this ran)
 */
export function instrumentGrpc(): boolean {
  if (instrumentation === undefined) {
    instrumentation = new GrpcInstrumentation();
    registerInstrumentations({ instrumentations: [instrumentation] });
    require("@grpc/grpc-js");
  }
  return isGrpcInstrumented();
}

/** The enabled gRPC instrumentation, if `instrumentGrpc()` ran. */
export function grpcInstrumentation(): GrpcInstrumentation | undefined {
  return instrumentation;
}

/** True when the loaded grpc-js server is patched by the instrumentation. */
export function isGrpcInstrumented(): boolean {
  const grpc = require("@grpc/grpc-js") as { Server: { prototype: { register: unknown } } };
  return (
    typeof grpc.Server.prototype.register === "function" && "__wrapped" in grpc.Server.prototype.register
  );
}
