import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** `countersign serve` running as its own process. */
export interface ServerProcess {
  child: ChildProcess;
  grpcAddress: string;
  connectUrl: string;
  opsUrl: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends SIGTERM and waits for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const cli = join(import.meta.dirname, "../../clients/cli/countersign.ts");

/**
 * Starts `countersign serve` with `args` (ports should be `127.0.0.1:0`) and resolves once it logs that
 * it is serving, with the addresses it chose. Rejects with its output if it exits first or does not
 * start within `timeoutMs`.
 */
export function startServerProcess(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", cli, "serve", ...args], {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start within ${options.timeoutMs ?? 30_000} ms:\n${output}`));
    }, options.timeoutMs ?? 30_000);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before serving:\n${output}`));
    }, reject);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on("line", (line) => {
      output += `${line}\n`;
      if (!line.includes('"countersign is serving"')) return;
      const info = JSON.parse(line) as { grpc: string; connect: string; ops: string };
      clearTimeout(timer);
      resolve({
        child,
        grpcAddress: info.grpc,
        connectUrl: info.connect,
        opsUrl: info.ops,
        output: () => output,
        exited,
        stop: () => {
          child.kill("SIGTERM");
          return exited;
        },
      });
    });
  });
}
