import { type Attributes, SpanStatusCode, type Tracer } from "@opentelemetry/api";

/**
 * Runs `work` in a span named `name` (the active span meanwhile, so store calls made by the work are its
 * children) that ends with the attributes `describe` reads from the result, or with an error status and
 * the exception. Without a tracer it only runs `work`.
 */
export async function inSchedulerSpan<T>(
  tracer: Tracer | undefined,
  name: string,
  work: () => Promise<T>,
  describe: (result: T) => Attributes,
): Promise<T> {
  if (tracer === undefined) return work();
  return tracer.startActiveSpan(name, async (span) => {
    try {
      const result = await work();
      span.setAttributes(describe(result));
      return result;
    } catch (err) {
      span.recordException(err instanceof Error ? err : String(err));
      span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message ?? String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}
