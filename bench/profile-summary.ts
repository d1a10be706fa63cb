/**
 * The hottest frames of a V8 CPU profile (`node --cpu-prof`, as `npm run bench -- --cpu-prof` writes for
 * the server): self time and total time (self plus callees) per function, top first.
 *
 *   npx tsx bench/profile-summary.ts bench/results/server-memory-main.cpuprofile [--top 30] [--filter text]
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { parseArgs } from "node:util";

/** The parts of a `.cpuprofile` this summary reads. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
}

/** Time spent in one function, in percent of the samples. */
export interface FrameCost {
  frame: string;
  selfPercent: number;
  totalPercent: number;
}

/** Self and total time per function (a recursive function's total counts each sample once). */
export function summarizeProfile(profile: CpuProfile): FrameCost[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (id: number) => {
    const f = (byId.get(id) as CpuProfile["nodes"][number]).callFrame;
    const where =
      f.url === "" ? "" : ` ${relative(process.cwd(), f.url.replace(/^file:\/\//, ""))}:${f.lineNumber + 1}`;
    return `${f.functionName === "" ? "(anonymous)" : f.functionName}${where}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let samples = 0;
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (hits === 0) continue;
    samples += hits;
    const own = name(n.id);
    self.set(own, (self.get(own) ?? 0) + hits);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const frame = name(id);
      if (seen.has(frame)) continue;
      seen.add(frame);
      total.set(frame, (total.get(frame) ?? 0) + hits);
    }
  }
  const pct = (x: number) => Math.round((x / Math.max(1, samples)) * 1000) / 10;
  return [...total.entries()]
    .map(([frame, t]) => ({ frame, selfPercent: pct(self.get(frame) ?? 0), totalPercent: pct(t) }))
    .sort((a, b) => b.selfPercent - a.selfPercent);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    options: {
      top: { type: "string", default: "40" },
      filter: { type: "string" },
      total: { type: "boolean" },
    },
    allowPositionals: true,
  });
  const file = positionals[0];
  if (file === undefined) {
    process.stderr.write(
      "usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [--top N] [--filter TEXT] [--total]\n",
    );
    process.exit(2);
  }
  const costs = summarizeProfile(JSON.parse(readFileSync(file, "utf8")) as CpuProfile)
    .filter((c) => values.filter === undefined || c.frame.includes(values.filter))
    .sort((a, b) => (values.total === true ? b.totalPercent - a.totalPercent : b.selfPercent - a.selfPercent))
    .slice(0, Number(values.top));
  process.stdout.write(" self%  total%  frame\n");
  for (const c of costs)
    process.stdout.write(
      `${c.selfPercent.toFixed(1).padStart(6)}  ${c.totalPercent.toFixed(1).padStart(6)}  ${c.frame}\n`,
    );
}
