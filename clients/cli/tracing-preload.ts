/**
 * Imported first by the CLI entry, before any module that loads grpc-js: when the environment asks for
 * tracing (`OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_ENDPOINT`), it enables the gRPC instrumentation so
 * that grpc-js is patched when `countersign serve` loads it (see `server/telemetry/grpc-instrumentation.ts`).
 */
import { tracingFromEnv } from "../../server/config/config.js";
import { instrumentGrpc } from "../../server/telemetry/grpc-instrumentation.js";

if (tracingFromEnv(process.env) !== undefined) instrumentGrpc();
