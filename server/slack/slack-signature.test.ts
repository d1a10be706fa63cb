import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { classifySlackError } from "./slack-calls.js";
import { verifySlackSignature } from "./slack-signature.js";

const secret = "8f742231b10e8888abcd99yyyzzz85a5";
const sign = (ts: string, body: string) =>
  `v0=${createHmac("sha256", secret).update(`v0:${ts}:${body}`).digest("hex")}`;

describe("verifySlackSignature", () => {
  const body = "payload=%7B%7D";
  const now = 1_700_000_000_000;
  const at = (skewSec: number) => String(now / 1000 + skewSec);
  const check = (timestamp: string | undefined, signature: string | undefined, b = body) =>
    verifySlackSignature({ signingSecret: secret, timestamp, signature, body: Buffer.from(b), nowMs: now });

  it("accepts a good signature within ±300 s", () => {
    for (const skew of [-300, 0, 300]) expect(check(at(skew), sign(at(skew), body)).ok).toBe(true);
  });

  it("names what is wrong with a bad request", () => {
    const ts = at(0);
    const good = sign(ts, body);
    const reasons = [
      check(undefined, good),
      check(ts, undefined),
      check("12ab", good),
      check(at(-301), sign(at(-301), body)),
      check(at(301), sign(at(301), body)),
      check(ts, good.replace("v0=", "v1=")),
      check(ts, good.slice(0, -2)),
      check(ts, `${good.slice(0, -1)}${good.endsWith("0") ? "1" : "0"}`),
      check(ts, good, `${body} `),
    ].map((r) => (r.ok ? "ok" : `${r.kind}: ${r.reason}`));
    expect(reasons).toEqual([
      "bad_signature: missing X-Slack-Request-Timestamp header",
      "bad_signature: missing X-Slack-Signature header",
      "bad_signature: X-Slack-Request-Timestamp is not a number of seconds",
      "stale_timestamp: timestamp is 301 s old; the window is ±300 s",
      "stale_timestamp: timestamp is 301 s in the future; the window is ±300 s",
      'bad_signature: unsupported signature version "v1"',
      "bad_signature: signature is not 64 lower-case hex digits",
      "bad_signature: signature mismatch",
      "bad_signature: signature mismatch",
    ]);
  });
});

describe("classifySlackError", () => {
  it("tells apart what may have happened from what certainly did not", () => {
    const cases: [unknown, string][] = [
      [{ code: "slack_webapi_rate_limited_error", retryAfter: 3 }, "rate_limited"],
      [{ code: "slack_webapi_platform_error", data: { error: "not_in_channel" } }, "blocked"],
      [{ code: "slack_webapi_platform_error", data: { error: "invalid_blocks" } }, "rejected"],
      [{ code: "slack_webapi_platform_error", data: { error: "fatal_error" } }, "ambiguous"],
      [{ code: "slack_webapi_http_error", statusCode: 503 }, "ambiguous"],
      [{ code: "slack_webapi_http_error", statusCode: 404 }, "rejected"],
      [
        {
          code: "slack_webapi_request_error",
          original: Object.assign(new Error("x"), { code: "ECONNREFUSED" }),
        },
        "unavailable",
      ],
      [
        {
          code: "slack_webapi_request_error",
          original: Object.assign(new Error("x"), { code: "ECONNABORTED" }),
        },
        "ambiguous",
      ],
      [new Error("something odd"), "ambiguous"],
    ];
    expect(cases.map(([err]) => classifySlackError(err).outcome)).toEqual(
      cases.map(([, outcome]) => outcome),
    );
    expect(classifySlackError(cases[0]?.[0]).retryAfterMs).toBe(3000);
  });
});
