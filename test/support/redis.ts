/**
 * Private Redis servers for tests: `redis-server` processes (masters, replicas, Sentinels) on free ports
 * in temporary directories, never the machine's shared Redis. Every process is killed when the test
 * process exits, whatever happens.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/**
 * Resolves when `condition` holds, asking every 50 ms, or fails after `timeoutMs` naming `what`. Only for
 * states of Redis (or of a server's readiness) that no event announces: replication caught up, a
 * snapshot written, Sentinels that discovered each other.
 */
export async function pollUntil(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** Resolves with the first line of a process's output that matches, or rejects when it exits first. */
function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(
      () => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      const line = lines.find((l) => pattern.test(l));
      if (line !== undefined) done(undefined, line);
    };
    const onExit = (code: number | null, signal: string | null) =>
      done(new Error(`${what}: the process exited (${code ?? signal}) first`));
    const done = (err: Error | undefined, line?: string) => {
      clearTimeout(timer);
      child.stdout?.off("data", onData);
      child.off("exit", onExit);
      if (err) reject(err);
      else resolve(line as string);
    };
    child.stdout?.on("data", onData);
    child.once("exit", onExit);
  });
}

/** A `redis-server` started by a test. */
export interface RedisServer {
  port: number;
  /** `redis://127.0.0.1:PORT`. */
  url: string;
  /** Working directory: where `dump.rdb` goes. */
  dir: string;
  process: ChildProcess;
  /** A new client (closed by `stop`). */
  client(): Redis;
  /** Waits for the next line of the server's log that matches. */
  waitForLog(pattern: RegExp, timeoutMs: number, what: string): Promise<string>;
  /** `kill -9`. */
  kill(): Promise<void>;
  /** `SIGSTOP`: the process freezes with its connections open. */
  freeze(): void;
  /** `SIGCONT`. */
  resume(): void;
  /** Stops the server (SIGKILL) and closes clients made by `client()`. */
  stop(): Promise<void>;
}

/** Options of `startRedis`. */
export interface StartRedisOptions {
  /** Use this port (e.g. to restart a server where it was). */
  port?: number;
  /** Use this directory (e.g. one holding a `dump.rdb` to load). */
  dir?: string;
  /** Replicate from this server. */
  replicaOf?: { port: number };
  /** More `redis-server` arguments, e.g. `["--appendonly", "yes"]`. */
  args?: string[];
}

/**
 * Starts a private `redis-server` on a free port (no persistence unless `args` asks for it) and resolves
 * once it accepts connections (a replica: once its first sync finished).
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "countersign-redis-"));
  const args = [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    "no",
    "--protected-mode",
    "no",
    ...(options.replicaOf === undefined ? [] : ["--replicaof", "127.0.0.1", String(options.replicaOf.port)]),
    ...(options.args ?? []),
  ];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", () => children.delete(child));
  const ready =
    options.replicaOf === undefined
      ? /Ready to accept connections/
      : /MASTER <-> REPLICA sync: Finished with success/;
  await waitForLine(child, ready, 20_000, `redis-server on port ${port}`);
  const clients: Redis[] = [];
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    process: child,
    client() {
      const c = new Redis({ port, host: "127.0.0.1", maxRetriesPerRequest: 1, lazyConnect: false });
      c.on("error", () => {});
      clients.push(c);
      return c;
    },
    waitForLog: (pattern, timeoutMs, what) => waitForLine(child, pattern, timeoutMs, what),
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
    freeze() {
      child.kill("SIGSTOP");
    },
    resume() {
      child.kill("SIGCONT");
    },
    async stop() {
      for (const c of clients) c.disconnect();
      child.kill("SIGCONT");
      await server.kill();
    },
  };
  return server;
}

/** Sentinels watching one master, started by a test. */
export interface Sentinels {
  /** The master's name in their configuration. */
  masterName: string;
  addresses: { host: string; port: number }[];
  /** `host:port,...` as `--redis-sentinels` takes it. */
  flag: string;
  /** The port of the master the Sentinels agree on now (asks the first Sentinel that answers). */
  masterPort(): Promise<number>;
  /** Waits until a Sentinel announces a new master (`+switch-master`) and returns its port. */
  nextSwitch(timeoutMs: number): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Starts `count` Sentinels (quorum 2) monitoring `master`, and resolves once each has seen the master's
 * replicas and the other Sentinels, so a failover can happen.
 */
export async function startSentinels(
  master: RedisServer,
  options: {
    count?: number;
    masterName?: string;
    downAfterMs?: number;
    failoverTimeoutMs?: number;
    replicas: number;
  },
): Promise<Sentinels> {
  const count = options.count ?? 3;
  const masterName = options.masterName ?? "countersign";
  const dir = mkdtempSync(join(tmpdir(), "countersign-sentinel-"));
  const started: { port: number; child: ChildProcess; exited: Promise<void> }[] = [];
  for (let i = 0; i < count; i++) {
    const port = await freePort();
    const conf = join(dir, `sentinel-${i}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        "bind 127.0.0.1",
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
        `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 1_000}`,
        `sentinel failover-timeout ${masterName} ${options.failoverTimeoutMs ?? 2_000}`,
        `sentinel parallel-syncs ${masterName} 1`,
        "",
      ].join("\n"),
    );
    const child = spawn("redis-server", [conf, "--sentinel"], { stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.once("exit", () => children.delete(child));
    started.push({ port, child, exited });
  }
  const addresses = started.map((s) => ({ host: "127.0.0.1", port: s.port }));
  const admin = started.map((s) => {
    const c = new Redis({ port: s.port, host: "127.0.0.1", maxRetriesPerRequest: 1 });
    c.on("error", () => {});
    return c;
  });
  // Each Sentinel must know the replicas and the other Sentinels before a failover is possible.
  for (const c of admin) {
    await pollUntil(
      async () => {
        const replicas = (await c.call("SENTINEL", "REPLICAS", masterName).catch(() => [])) as unknown[];
        const peers = (await c.call("SENTINEL", "SENTINELS", masterName).catch(() => [])) as unknown[];
        return replicas.length >= options.replicas && peers.length >= count - 1;
      },
      30_000,
      "Sentinels discovering each other and the replicas",
    );
  }
  return {
    masterName,
    addresses,
    flag: addresses.map((a) => `${a.host}:${a.port}`).join(","),
    async masterPort() {
      for (const c of admin) {
        const reply = (await c.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName).catch(() => null)) as
          | [string, string]
          | null;
        if (reply !== null) return Number(reply[1]);
      }
      throw new Error("no Sentinel answered");
    },
    nextSwitch(timeoutMs) {
      const first = started[0];
      if (first === undefined) throw new Error("no Sentinel");
      return waitForLine(first.child, /\+switch-master/, timeoutMs, "+switch-master").then((line) =>
        Number(/(\d+)\s*$/.exec(line.trim())?.[1]),
      );
    },
    async stop() {
      for (const c of admin) c.disconnect();
      for (const s of started) s.child.kill("SIGKILL");
      await Promise.all(started.map((s) => s.exited));
    },
  };
}

/**
 * A TCP proxy in front of a Redis that loses one reply on purpose (for cutting and refusing connections,
 * `tcp-proxy.ts` has the general proxy).
 */
export interface ReplyLosingProxy {
  /** `redis://127.0.0.1:PORT` of the proxy. */
  url: string;
  /**
   * The next time a client sends something containing `marker` (any case), Redis gets it (and executes
   * it) but the reply is lost and the connection drops, as when the network fails at the worst moment.
   * Resolves once that happened.
   */
  loseReplyTo(marker: string): Promise<void>;
  close(): Promise<void>;
}

/** Starts a reply-losing proxy on a free port that forwards to the Redis on `targetPort`. */
export async function startReplyLosingProxy(targetPort: number): Promise<ReplyLosingProxy> {
  const pairs = new Set<{ client: Socket; upstream: Socket }>();
  let trap: { marker: string; sprung: () => void } | undefined;
  const server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    let armed: (() => void) | undefined;
    client.on("data", (chunk: Buffer) => {
      if (trap !== undefined && chunk.toString("latin1").toLowerCase().includes(trap.marker.toLowerCase())) {
        armed = trap.sprung;
        trap = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (armed !== undefined) {
        const sprung = armed;
        armed = undefined;
        client.destroy();
        upstream.destroy();
        sprung();
        return;
      }
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const socket of [client, upstream]) {
      socket.on("close", end);
      socket.on("error", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    loseReplyTo(marker) {
      return new Promise((resolve) => {
        trap = { marker, sprung: resolve };
      });
    },
    async close() {
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
