/** One sample of the Prometheus text exposition format. */
export interface PrometheusSample {
  /** The sample's name, e.g. `countersign_create_duration_seconds_bucket`. */
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed `/metrics` page. */
export interface PrometheusPage {
  samples: PrometheusSample[];
  /** Metric family names with their `# TYPE` (counter, gauge, histogram, summary, untyped). */
  families: Map<string, string>;
  /** The sum of the samples named `name` whose labels include `labels`. */
  value(name: string, labels?: Record<string, string>): number;
}

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * Parses the Prometheus text format (what `/metrics` serves), for tests and for tools that check alert
 * rules and dashboards against the metric names a live server exposes.
 * @throws Error naming the first line that is not valid
 */
export function parsePrometheusText(text: string): PrometheusPage {
  const samples: PrometheusSample[] = [];
  const families = new Map<string, string>();
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    if (line.startsWith("#")) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (type) families.set(type[1] as string, type[2] as string);
      continue;
    }
    const match = sampleLine.exec(line);
    if (match === null) throw new Error(`line ${i + 1} is not a Prometheus sample: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(labelPair)) {
      labels[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, (_, c: string) =>
        c === "n" ? "\n" : c,
      );
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return {
    samples,
    families,
    value(name, wanted = {}) {
      let sum = 0;
      for (const s of samples) {
        if (s.name !== name) continue;
        if (Object.entries(wanted).every(([k, v]) => s.labels[k] === v)) sum += s.value;
      }
      return sum;
    },
  };
}

/** The metric family a sample name belongs to (`x_bucket`, `x_sum`, `x_count` → `x` for histograms). */
export function familyOf(sampleName: string, families: ReadonlyMap<string, string>): string {
  if (families.has(sampleName)) return sampleName;
  const base = sampleName.replace(/_(bucket|sum|count|total|created)$/, "");
  return families.has(base) ? base : sampleName;
}

/** The Countersign and Node process metric names a PromQL expression reads. */
export function metricNamesIn(expr: string): string[] {
  return [...new Set(expr.match(/\b(?:countersign|process|nodejs)_[a-z0-9_]+/g) ?? [])];
}
