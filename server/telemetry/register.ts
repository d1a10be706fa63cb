/**
 * Preload for programs other than `countersign serve` that embed the server with tracing:
 * `node --import ./dist/server/telemetry/register.js app.js`. It enables the gRPC instrumentation before
 * the program's modules load grpc-js (see `grpc-instrumentation.ts`); `countersign serve` does the same
 * by itself when tracing is configured.
 */
import { instrumentGrpc } from "./grpc-instrumentation.js";

instrumentGrpc();
