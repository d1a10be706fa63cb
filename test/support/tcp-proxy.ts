import * as net from "node:net";

/** What the proxy does with connections. */
export type TcpProxyMode =
  /** Forward both ways (the default). */
  | "forward"
  /** Reset every new connection at once, as an unreachable server would. Open connections stay. */
  | "refuse"
  /** Accept new connections but forward nothing in either direction, as a hung server would. */
  | "blackhole";

/** Options of `createTcpProxy`. */
export interface TcpProxyOptions {
  /** Where to forward: `host:port` (IPv6 in brackets) or `{ host, port }`. */
  target: string | { host: string; port: number };
  /** Address to listen on. @default "127.0.0.1" */
  host?: string;
  /** Port to listen on. @default 0 (a free port) */
  port?: number;
  /** Initial mode. @default "forward" */
  mode?: TcpProxyMode;
  /** Delay added to every chunk in each direction, in milliseconds (order is kept). @default 0 */
  latencyMs?: number;
}

/** Counters of a proxy, for tests to wait on. */
export interface TcpProxyStats {
  /** Connections accepted in "forward" or "blackhole" mode. */
  accepted: number;
  /** Connections reset because the proxy was in "refuse" mode. */
  refused: number;
  /** Connections the proxy cut with `dropConnections()`. */
  dropped: number;
  /** Connections open now. */
  open: number;
}

/**
 * A TCP proxy between a client and a server that a test controls: cut every connection, refuse new ones,
 * hold them without forwarding, or add latency. It forwards bytes only, so it works for any protocol
 * (TLS included: the handshake is end to end).
 */
export interface TcpProxy {
  /** The address the proxy listens on, e.g. `127.0.0.1`. */
  readonly host: string;
  /** The port the proxy listens on. */
  readonly port: number;
  /** `host:port` to connect to instead of the target. */
  readonly address: string;
  /** Counters since the proxy started. */
  stats(): TcpProxyStats;
  /** Changes what happens to new connections (and, for "blackhole", to data on open ones). */
  setMode(mode: TcpProxyMode): void;
  /** Changes the latency added to each chunk from now on. */
  setLatency(ms: number): void;
  /** Cuts every open connection at once (both sides see a reset); returns how many were cut. */
  dropConnections(): number;
  /** Cuts every connection and stops listening. */
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  server: net.Socket;
  /** Releases the timers of both directions. */
  release: (() => void)[];
}

function parseTarget(target: TcpProxyOptions["target"]): { host: string; port: number } {
  if (typeof target !== "string") return target;
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(target);
  if (match === null) throw new Error(`tcp proxy: target ${JSON.stringify(target)} is not host:port`);
  return { host: match[1] ?? match[2] ?? "", port: Number(match[3]) };
}

/** Starts a TCP proxy to `options.target`. */
export async function createTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const target = parseTarget(options.target);
  let mode: TcpProxyMode = options.mode ?? "forward";
  let latencyMs = options.latencyMs ?? 0;
  const pairs = new Set<Pair>();
  const counters = { accepted: 0, refused: 0, dropped: 0 };

  /** Flushes of the held data of every direction, run when the mode goes back to "forward". */
  const resumers = new Set<() => void>();

  /**
   * Forwards `from` → `to`: in order, after the latency, and held (not lost) while in "blackhole" mode,
   * as TCP would deliver it once a stalled network heals. Returns what releases its timers.
   */
  const pipe = (from: net.Socket, to: net.Socket): (() => void) => {
    const held: Buffer[] = [];
    const timers = new Set<NodeJS.Timeout>();
    let lastDue = 0;
    let ended = false;
    /** Passes the end of the stream on once everything before it is delivered. */
    const endIfDone = () => {
      if (ended && held.length === 0 && timers.size === 0 && !to.destroyed) to.end();
    };
    const deliver = (chunk: Buffer) => {
      const now = Date.now();
      if (latencyMs <= 0 && lastDue <= now) {
        to.write(chunk);
        return;
      }
      lastDue = Math.max(now + latencyMs, lastDue);
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (!to.destroyed) to.write(chunk);
        endIfDone();
      }, lastDue - now);
      timers.add(timer);
    };
    const resume = () => {
      for (const chunk of held.splice(0)) deliver(chunk);
      endIfDone();
    };
    resumers.add(resume);
    from.on("data", (chunk: Buffer) => {
      if (mode === "blackhole") held.push(chunk);
      else deliver(chunk);
    });
    from.on("end", () => {
      ended = true;
      if (mode !== "blackhole") endIfDone();
    });
    return () => {
      resumers.delete(resume);
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    };
  };

  const server = net.createServer({ noDelay: true }, (client) => {
    if (mode === "refuse") {
      counters.refused++;
      client.resetAndDestroy();
      return;
    }
    counters.accepted++;
    const upstream = net.connect({ host: target.host, port: target.port, noDelay: true });
    const pair = { client, server: upstream, release: [] as (() => void)[] };
    pairs.add(pair);
    const teardown = () => {
      for (const release of pair.release.splice(0)) release();
      if (!pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    // A reset on one side is passed on as a reset on the other.
    client.on("error", () => {
      if (!upstream.destroyed) upstream.resetAndDestroy();
      teardown();
    });
    upstream.on("error", () => {
      if (!client.destroyed) client.resetAndDestroy();
      teardown();
    });
    client.on("close", teardown);
    upstream.on("close", teardown);
    pair.release.push(pipe(client, upstream), pipe(upstream, client));
  });

  const host = options.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  const dropConnections = () => {
    const cut = [...pairs];
    pairs.clear();
    for (const { client, server: upstream, release } of cut) {
      for (const r of release.splice(0)) r();
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    counters.dropped += cut.length;
    return cut.length;
  };

  return {
    host,
    port,
    address: host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`,
    stats: () => ({ ...counters, open: pairs.size }),
    setMode: (next) => {
      mode = next;
      if (mode === "forward") for (const resume of [...resumers]) resume();
    },
    setLatency: (ms) => {
      latencyMs = ms;
    },
    dropConnections,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        dropConnections();
      }),
  };
}
