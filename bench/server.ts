/**
 * The server under test: `countersign serve` in its own process, in production mode (mutual TLS with
 * the benchmark's certificates, audit log to a file, metrics on the ops port, the create rate limiter
 * in the path), plus the Echo service (`--bench-echo`).
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { type TestPki, testIdentities } from "../test/support/certs.js";
import { pollUntil } from "../test/support/redis.js";
import { type ServerProcess, startServerProcess } from "../test/support/server-process.js";
import type { BenchTarget } from "./transports.js";

/** Which store the server uses. */
export type BenchStore = "memory" | "redis";

/** Options of `startBenchServer`. */
export interface BenchServerOptions {
  store: BenchStore;
  /** `redis://127.0.0.1:PORT` of the private Redis, with `store: "redis"`. */
  redisUrl?: string;
  pki: TestPki;
  policyPath: string;
  /** Directory for the audit log. */
  workDir: string;
  /** Write a CPU profile of the server into this directory when it stops (see `server-preload.mjs`). */
  profileDir?: string;
  /** Distinguishes the files of successive servers. */
  name: string;
  /** More Node options for the server process, e.g. `--max-semi-space-size=32`. */
  nodeOptions?: string;
}

/** A running server under test. */
export interface BenchServer {
  target: BenchTarget;
  opsUrl: string;
  /** The flags it was started with (for the results file). */
  args: string[];
  process: ServerProcess;
  /**
   * Resident set size and V8 heap in use right after a full garbage collection in the server (what
   * live objects take), as the process itself reports them (see `server-preload.mjs`). Not read from
   * `/metrics`: a scrape reads up to 10 000 pending approvals for its gauges, and its garbage would
   * count.
   */
  liveMemory(): Promise<ServerMemory>;
  /** Resident set size from the process's statistics (`/proc/PID/status`), without disturbing it. */
  rss(): number;
  stop(): Promise<void>;
}

/** Memory of the server process, in bytes. */
export interface ServerMemory {
  rss: number;
  heapUsed: number;
}

/**
 * Starts `countersign serve` for the benchmark and resolves once it serves. The rate limit is set far
 * above the load so that its interceptor (and, with Redis, its shared counters) stays in the measured
 * path without refusing anything.
 * @throws Error with the server's output when it does not start
 */
export async function startBenchServer(options: BenchServerOptions): Promise<BenchServer> {
  const args = [
    "--grpc-listen=127.0.0.1:0",
    "--connect-listen=127.0.0.1:0",
    "--ops-listen=127.0.0.1:0",
    `--policy=${options.policyPath}`,
    `--tls-cert=${options.pki.paths.serverCert}`,
    `--tls-key=${options.pki.paths.serverKey}`,
    `--tls-client-ca=${options.pki.paths.ca}`,
    "--require-client-cert",
    `--requesters=${testIdentities.requester}`,
    `--deciders=${testIdentities.decider}`,
    "--create-rate-limit=1000000",
    "--create-burst=1000000",
    // The load opens thousands of streams and connections from one identity and address.
    "--max-streams-per-identity=1000000",
    "--max-streams=1000000",
    "--max-connections=1000000",
    "--max-connections-per-peer=1000000",
    `--audit-file=${join(options.workDir, `audit-${options.name}.jsonl`)}`,
    "--log-level=info",
    "--bench-echo",
    ...(options.store === "redis" ? [`--store=${options.redisUrl ?? ""}`] : []),
  ];
  const memoryFile = join(options.workDir, `memory-${options.name}.json`);
  const proc = await startServerProcess(args, {
    timeoutMs: 60_000,
    env: {
      ADMIN_TOKEN: "bench-admin-token-0123456789",
      NODE_ENV: "production",
      NODE_OPTIONS: `--expose-gc --import ${join(import.meta.dirname, "server-preload.mjs")} ${options.nodeOptions ?? ""}`,
      BENCH_MEMORY_FILE: memoryFile,
      ...(options.profileDir === undefined
        ? {}
        : { BENCH_CPU_PROFILE: join(options.profileDir, `server-${options.name}.cpuprofile`) }),
    },
  });
  const opsUrl = proc.opsUrl;
  return {
    target: {
      grpcAddress: proc.grpcAddress,
      connectUrl: proc.connectUrl,
      ca: options.pki.ca,
    },
    opsUrl,
    args,
    process: proc,
    rss: () => processRss(proc.child.pid),
    async liveMemory() {
      rmSync(memoryFile, { force: true });
      proc.child.kill("SIGUSR2");
      // The answer is a file the server writes once the collection is done; nothing announces it.
      await pollUntil(() => existsSync(memoryFile), 10_000, "the server's memory after a collection");
      return JSON.parse(readFileSync(memoryFile, "utf8")) as ServerMemory;
    },
    async stop() {
      const { code, signal } = await proc.stop();
      if (code !== 0)
        throw new Error(
          `the server exited with ${code ?? signal} on SIGTERM:\n${proc.output().slice(-4000)}`,
        );
    },
  };
}

/**
 * Resident set size of a process in bytes, from `/proc/PID/status` (Linux).
 * @throws Error where there is no such file
 */
export function processRss(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid ?? "self"}/status`, "utf8");
  const kb = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
  if (!Number.isFinite(kb)) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return kb * 1024;
}
