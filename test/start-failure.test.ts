import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadServeConfig, type ServeFlags } from "../server/config/config.js";
import { startServer } from "../server/main.js";
import { createTestPki, type TestPki } from "./support/certs.js";
import { type FakeSlack, startFakeSlack } from "./support/fake-slack.js";
import { type RedisServer, startRedis } from "./support/redis.js";
import { startServerProcess } from "./support/server-process.js";
import { waitFor } from "./support/wait.js";

let pki: TestPki;
let slack: FakeSlack;
let redis: RedisServer;
let taken: Server;
let takenPort: number;
let dir: string;
let policy: string;
beforeAll(async () => {
  pki = createTestPki();
  [slack, redis] = await Promise.all([startFakeSlack(), startRedis()]);
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
  takenPort = (taken.address() as { port: number }).port;
  dir = mkdtempSync(join(tmpdir(), "countersign-start-failure-"));
  policy = join(dir, "policies.yaml");
  writeFileSync(
    policy,
    "version: 1\ndefaults: { channel: C0, timeout: 10m }\npolicies:\n  - { name: p, match: 'a.*', approvers: { users: [U1] } }\n",
  );
  writeFileSync(
    join(dir, "broken.pem"),
    "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n",
  );
}, 60_000);
afterAll(async () => {
  taken?.close();
  await Promise.all([slack?.close(), redis?.stop()]);
});

/** Everything a start can open: Redis, the audit file, the policy watch, TLS watches, Slack, three ports. */
function flags(overrides: ServeFlags): ServeFlags {
  return {
    grpcListen: "127.0.0.1:0",
    connectListen: "127.0.0.1:0",
    opsListen: "127.0.0.1:0",
    slackListen: "127.0.0.1:0",
    policy,
    watchPolicy: true,
    store: redis.url,
    auditFile: join(dir, "audit.jsonl"),
    tlsCert: pki.paths.serverCert,
    tlsKey: pki.paths.serverKey,
    tlsClientCa: pki.paths.ca,
    requireClientCert: true,
    ...overrides,
  };
}

const slackEnv = () => ({
  SLACK_BOT_TOKEN: slack.token,
  SLACK_SIGNING_SECRET: "a-signing-secret",
  SLACK_API_URL: slack.apiUrl,
});

/** The process's active handles and requests, as a sorted list of their kinds. */
const activeResources = () => process.getActiveResourcesInfo().sort();

/** The kinds in `now` beyond those in `before`, counting each kind. */
function extra(now: string[], before: string[]): string[] {
  const left = [...before];
  return now.filter((kind) => {
    const i = left.indexOf(kind);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
}

describe("a failed start", { timeout: 60_000 }, () => {
  const failures: { name: string; flags: () => ServeFlags; message: RegExp }[] = [
    {
      name: "the gRPC port is taken",
      flags: () => ({ grpcListen: `127.0.0.1:${takenPort}` }),
      message: /cannot listen for gRPC on 127\.0\.0\.1:\d+/,
    },
    {
      name: "the Connect port is taken",
      flags: () => ({ connectListen: `127.0.0.1:${takenPort}` }),
      message: /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
    },
    {
      name: "the ops port is taken (after the Slack gateway started)",
      flags: () => ({ opsListen: `127.0.0.1:${takenPort}` }),
      message: /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
    },
    {
      name: "the server certificate is broken",
      flags: () => ({ tlsCert: join(dir, "broken.pem") }),
      message: /TLS files .* cannot be used/,
    },
  ];

  for (const failure of failures) {
    it(`${failure.name}: rejects, and leaves no handle open (store, timers, watchers, sockets)`, async () => {
      const config = loadServeConfig(flags(failure.flags()), slackEnv());
      // A first, successful start and close, so that what loads once (modules, pools) is loaded.
      const warm = await startServer(loadServeConfig(flags({}), slackEnv()), {
        logger: pino({ level: "silent" }),
      });
      await warm.close();
      const before = activeResources();

      await expect(startServer(config, { logger: pino({ level: "silent" }) })).rejects.toThrow(
        failure.message,
      );

      // Closing sockets and watchers completes on a later turn of the event loop; a leak never does.
      // (What the warm-up's close was still finishing may end meanwhile: fewer is fine, more is a leak.)
      let leaked = extra(activeResources(), before);
      await waitFor(
        () => {
          leaked = extra(activeResources(), before);
          return leaked.length === 0;
        },
        5_000,
        "the active handles to return to what they were before the start",
      ).catch(() => undefined);
      expect(leaked).toEqual([]);
    });
  }
});

describe("`countersign serve` that cannot start", () => {
  it("exits non-zero promptly when the gRPC port is taken, with the Slack gateway configured", async () => {
    const started = Date.now();
    const args = Object.entries(flags({ grpcListen: `127.0.0.1:${takenPort}`, store: "memory" })).flatMap(
      ([key, value]) => {
        const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
        return value === true ? [flag] : [flag, String(value)];
      },
    );
    const error = await startServerProcess(args, { env: slackEnv(), timeoutMs: 20_000 }).then(
      (server) => {
        server.child.kill("SIGKILL");
        return new Error("the server started");
      },
      (err: Error) => err,
    );
    expect(error.message).toMatch(/server exited \(1\) before serving/);
    expect(error.message).toContain("countersign could not start");
    expect(error.message).toMatch(/cannot listen for gRPC on 127\.0\.0\.1:\d+/);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 30_000);
});
