/**
 * Latency recording for the benchmark: HDR histograms (hdr-histogram-js) in microseconds, sent between
 * processes in their compressed form and merged by the runner.
 */
import {
  build,
  decodeFromCompressedBase64,
  encodeIntoCompressedBase64,
  type Histogram,
} from "hdr-histogram-js";

/** Highest latency a histogram tracks, in microseconds (10 minutes); longer ones are clamped to it. */
const highestUs = 600_000_000;

/** A new latency histogram: microseconds from 1 µs to 10 min, 3 significant digits. */
export function newHistogram(): Histogram {
  return build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: highestUs,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
  });
}

/** Records a duration given in nanoseconds (as `process.hrtime.bigint()` differences are). */
export function recordNs(histogram: Histogram, ns: bigint | number): void {
  const us = Math.round(Number(ns) / 1_000);
  histogram.recordValue(Math.min(highestUs, Math.max(1, us)));
}

/** The compressed, base64 form of a histogram, to send to another process. */
export function encodeHistogram(histogram: Histogram): string {
  return encodeIntoCompressedBase64(histogram);
}

/** Adds the histograms encoded by `encodeHistogram` into one. */
export function mergeHistograms(encoded: readonly string[]): Histogram {
  const total = newHistogram();
  for (const text of encoded) total.add(decodeFromCompressedBase64(text));
  return total;
}

/** Percentiles of a latency distribution, in milliseconds. */
export interface LatencySummary {
  /** Recorded values. */
  count: number;
  min: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

const toMs = (us: number) => Math.round(us) / 1_000;

/** The percentiles of a histogram, in milliseconds (µs precision). */
export function summarize(histogram: Histogram): LatencySummary {
  return {
    count: histogram.totalCount,
    min: toMs(histogram.totalCount === 0 ? 0 : histogram.minNonZeroValue),
    p50: toMs(histogram.getValueAtPercentile(50)),
    p95: toMs(histogram.getValueAtPercentile(95)),
    p99: toMs(histogram.getValueAtPercentile(99)),
    max: toMs(histogram.maxValue),
    mean: toMs(histogram.mean),
  };
}
