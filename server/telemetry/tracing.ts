import { context, propagation, type Tracer, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  ConsoleSpanExporter,
  SimpleSpanProcessor,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import { grpcInstrumentation } from "./grpc-instrumentation.js";

/** Name of the tracer of Countersign's own spans (RPCs over Connect, store calls, Slack calls). */
export const tracerName = "countersign";

/** The span exporters `OTEL_TRACES_EXPORTER` may name. */
export type TraceExporterName = "otlp" | "console";

/** Options of `startTracing`. */
export interface TracingOptions {
  /** `"otlp"`: OTLP over HTTP, configured by the standard `OTEL_EXPORTER_OTLP_*` variables. */
  exporter: TraceExporterName | SpanExporter;
  /** Export in batches (production) rather than span by span (tests). @default true */
  batch?: boolean;
}

/** Tracing in force: the tracer of Countersign's spans, and how to stop. */
export interface Tracing {
  readonly tracer: Tracer;
  /** Exports what is buffered and unregisters the global provider, context manager and propagator. */
  shutdown(): Promise<void>;
}

/**
 * Starts OpenTelemetry tracing: a Node tracer provider registered globally (async-local context and W3C
 * trace-context propagation, so a caller's `traceparent` becomes the parent), the resource named
 * `countersign` unless `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` say otherwise, and the gRPC
 * instrumentation pointed at it. One tracing per process at a time.
 */
export function startTracing(options: TracingOptions): Tracing {
  const exporter =
    options.exporter === "otlp"
      ? new OTLPTraceExporter()
      : options.exporter === "console"
        ? new ConsoleSpanExporter()
        : options.exporter;
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: "countersign" }))
    .merge(detectResources({ detectors: [envDetector] }));
  const processor =
    options.batch === false ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter);
  const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
  provider.register();
  grpcInstrumentation()?.setTracerProvider(provider);
  return {
    tracer: provider.getTracer(tracerName),
    async shutdown() {
      try {
        await provider.shutdown();
      } finally {
        trace.disable();
        context.disable();
        propagation.disable();
      }
    },
  };
}
