/**
 * The runner's side of the load-generator processes: forks them (`bench/load-worker.ts` under tsx),
 * hands them jobs and collects the answers.
 */
import { type ChildProcess, fork } from "node:child_process";
import { join } from "node:path";
import type { FromWorker, Job, JobTarget, ToWorker } from "./jobs.js";

/** A job sent to a worker. */
export interface JobHandle<T> {
  /** With `watch`: resolves once every stream has its first snapshot (with how many opened). */
  ready: Promise<number>;
  /** The job's result. */
  result: Promise<T>;
  /** Asks a `watch` job to close its streams and answer. */
  stop(): void;
}

/** A pool of load-generator processes. */
export interface LoadWorkers {
  /** How many processes there are. */
  size: number;
  /** Sends `job` to worker `index` (modulo the pool size). */
  run<T>(index: number, target: JobTarget, job: Job): JobHandle<T>;
  /** Ends every worker process. */
  close(): Promise<void>;
}

const workerScript = join(import.meta.dirname, "load-worker.ts");

/** How long a worker may take to start (tsx compiles it first) before the run gives up. */
const startTimeoutMs = 60_000;

/** Longest any job may take before the run gives up on it (every job bounds its own waits well below). */
const jobTimeoutMs = 10 * 60_000;

interface Pending {
  ready: (opened: number) => void;
  readyFailed: (err: Error) => void;
  done: (result: unknown) => void;
  failed: (err: Error) => void;
}

/** Forks `count` load-generator processes and resolves once each listens for jobs. */
export async function startLoadWorkers(count: number): Promise<LoadWorkers> {
  const pending = new Map<number, Pending>();
  let nextJobId = 1;
  const children: ChildProcess[] = [];
  const exits: Promise<void>[] = [];
  let closing = false;

  const started = Array.from({ length: count }, (_, index) => {
    const child = fork(workerScript, [], {
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    children.push(child);
    exits.push(new Promise((resolve) => child.once("exit", () => resolve())));
    child.on("message", (message: FromWorker) => {
      if (message.type === "up") return;
      const job = pending.get(message.jobId);
      if (job === undefined) return;
      if (message.type === "ready") job.ready(message.opened);
      else if (message.type === "result") {
        pending.delete(message.jobId);
        job.done(message.result);
      } else {
        pending.delete(message.jobId);
        job.failed(new Error(`load worker ${index}: ${message.message}`));
      }
    });
    child.once("exit", (code, signal) => {
      if (closing) return;
      for (const [id, job] of pending) {
        pending.delete(id);
        const err = new Error(`load worker ${index} exited (${code ?? signal})`);
        job.readyFailed(err);
        job.failed(err);
      }
    });
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`load worker ${index} did not start within ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
      const onMessage = (message: FromWorker) => {
        if (message.type !== "up") return;
        clearTimeout(timer);
        child.off("message", onMessage);
        child.off("exit", onExit);
        resolve();
      };
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        reject(new Error(`load worker ${index} exited (${code}) before it started`));
      };
      child.on("message", onMessage);
      child.once("exit", onExit);
    });
  });

  const close = async () => {
    closing = true;
    for (const child of children) if (child.connected) child.disconnect();
    await Promise.all(exits);
  };
  try {
    await Promise.all(started);
  } catch (err) {
    for (const child of children) child.kill("SIGKILL");
    await close();
    throw err;
  }

  return {
    size: count,
    run<T>(index: number, target: JobTarget, job: Job): JobHandle<T> {
      const child = children[index % count] as ChildProcess;
      const jobId = nextJobId++;
      let entry: Pending | undefined;
      const ready = new Promise<number>((resolve, reject) => {
        entry = { ready: resolve, readyFailed: reject } as Pending;
      });
      // A job that is not a watch never becomes ready; nobody waits for it then.
      ready.catch(() => {});
      const result = new Promise<T>((resolve, reject) => {
        (entry as Pending).done = resolve as (result: unknown) => void;
        (entry as Pending).failed = (err) => {
          (entry as Pending).readyFailed(err);
          reject(err);
        };
      });
      pending.set(jobId, entry as Pending);
      const timer = setTimeout(() => {
        if (!pending.delete(jobId)) return;
        (entry as Pending).failed(
          new Error(
            `load worker ${index % count} did not answer a ${job.kind} job within ${jobTimeoutMs} ms`,
          ),
        );
      }, jobTimeoutMs);
      result.then(
        () => clearTimeout(timer),
        () => clearTimeout(timer),
      );
      const message: ToWorker = { type: "job", jobId, target, job };
      child.send(message);
      return {
        ready,
        result,
        stop: () => {
          const stop: ToWorker = { type: "stop", jobId };
          if (child.connected) child.send(stop);
        },
      };
    },
    close,
  };
}
