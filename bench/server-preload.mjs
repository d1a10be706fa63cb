/**
 * Preloaded into the server under test by `npm run bench` (`NODE_OPTIONS=--expose-gc --import
 * ./bench/server-preload.mjs`), for measurement only:
 * - SIGUSR2 runs a full garbage collection and then writes the process's memory (`rss`, `heapUsed`,
 *   bytes) as JSON to BENCH_MEMORY_FILE: what live objects take, read without a request to the server;
 * - with BENCH_CPU_PROFILE set, the whole process is CPU-profiled and the `.cpuprofile` written there on
 *   exit, like `node --cpu-prof` (which Node 20 does not accept in NODE_OPTIONS).
 */
import { renameSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector";

const memoryFile = process.env.BENCH_MEMORY_FILE;
const gc = globalThis.gc;
if (typeof gc === "function" && memoryFile !== undefined && memoryFile !== "") {
  process.on("SIGUSR2", () => {
    gc();
    const { rss, heapUsed } = process.memoryUsage();
    // Written whole, then renamed: the reader never sees half a file.
    writeFileSync(`${memoryFile}.tmp`, JSON.stringify({ rss, heapUsed }));
    renameSync(`${memoryFile}.tmp`, memoryFile);
  });
}

const out = process.env.BENCH_CPU_PROFILE;
if (out !== undefined && out !== "") {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 200 });
  session.post("Profiler.start");
  // The in-process inspector answers synchronously, so this works in an exit handler.
  process.on("exit", () => {
    session.post("Profiler.stop", (err, result) => {
      if (err === null && result !== undefined) writeFileSync(out, JSON.stringify(result.profile));
    });
  });
}
