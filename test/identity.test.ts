import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Decision, State } from "../gen/countersign/v1/approval_pb.js";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.js";
import { createTestPki, TestCa, type TestPki, testIdentities, writePemFiles } from "./support/certs.js";
import type { Protocol } from "./support/clients.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const protocols: Protocol[] = ["grpc", "connect", "grpc-web"];

async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

/**
 * A server whose client CA is a fresh one, so a test can issue any certificate it likes, with the
 * PKI's server certificate and decider.
 */
let pki: TestPki | undefined;

async function serverWithCa(flags: Record<string, string> = {}) {
  const ca = new TestCa("Identity Test CA");
  pki ??= createTestPki();
  const files = writePemFiles({ "clients.pem": `${pki.ca}${ca.cert}` });
  const ts = await startTestServer({
    pki,
    flags: {
      tlsClientCa: files["clients.pem"] as string,
      requesters: testIdentities.requester,
      deciders: testIdentities.decider,
      ...flags,
    },
  });
  return { ca, ts };
}

describe("identity comes from the configured certificate field only", () => {
  let ca: TestCa;
  let ts: TestServer;
  beforeAll(async () => {
    ({ ca, ts } = await serverWithCa());
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("a certificate whose CN (or DNS SAN) spells a URI identity does not act as it: UNAUTHENTICATED", async () => {
    const impostors = [
      ca.issue({ commonName: testIdentities.requester }),
      ca.issue({ commonName: "x", dns: ["ci.countersign.test"] }),
    ];
    for (const impostor of impostors)
      for (const protocol of protocols) {
        const err = await refusal(
          ts.clients(impostor, protocol).approvals.createApproval({ action: "deploy.staging", title: "x" }),
        );
        expect(err.code, protocol).toBe(Code.Unauthenticated);
        expect(err.rawMessage).toBe(
          "the client certificate has no URI SAN to take the caller's identity from",
        );
      }
    // The real requester, with the same CA, is served.
    const ok = await ts
      .clients((pki as TestPki).requester, "grpc")
      .approvals.createApproval({ action: "deploy.staging", title: "ok" });
    expect(ok.approval?.requester).toBe(testIdentities.requester);
  });

  it('an empty URI SAN is refused, never the identity ""', async () => {
    const empty = ca.issue({ commonName: "x", uris: [""] });
    for (const protocol of protocols) {
      const err = await refusal(
        ts.clients(empty, protocol).approvals.getApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" }),
      );
      expect(err.code, protocol).toBe(Code.Unauthenticated);
      expect(err.rawMessage).toBe("the client certificate's URI SAN is empty; it names no identity");
    }
  });

  it("a URI SAN holding `, DNS:` is one URI, not a second name", async () => {
    const tricky = ca.issue({ commonName: "x", uris: [`${testIdentities.requester}, DNS:admin`] });
    const err = await refusal(
      ts.clients(tricky, "connect").approvals.createApproval({ action: "deploy.staging", title: "x" }),
    );
    // Its identity is the whole URI, which is not a configured requester.
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.rawMessage).toContain(`"${testIdentities.requester}, DNS:admin"`);
  });
});

describe("--identity-from", () => {
  it("uri,dns takes a DNS SAN when there is no URI SAN; cn takes the subject CN", async () => {
    const dnsName = "ci.countersign.test";
    const { ca, ts } = await serverWithCa({ identityFrom: "uri,dns", requesters: dnsName });
    try {
      const dnsOnly = ca.issue({ commonName: "x", dns: [dnsName] });
      for (const protocol of protocols) {
        const got = await ts
          .clients(dnsOnly, protocol)
          .approvals.createApproval({ action: "deploy.staging", title: protocol });
        expect(got.approval?.requester).toBe(dnsName);
      }
      // A CN is still not an identity.
      const cnOnly = ca.issue({ commonName: dnsName });
      expect(
        (
          await refusal(
            ts.clients(cnOnly, "grpc").approvals.getApproval({ id: "01AAAAAAAAAAAAAAAAAAAAAAAA" }),
          )
        ).code,
      ).toBe(Code.Unauthenticated);
    } finally {
      await ts.close();
    }
    const cn = await serverWithCa({ identityFrom: "cn", requesters: "ci-runner" });
    try {
      const got = await cn.ts
        .clients(cn.ca.issue({ commonName: "ci-runner", uris: ["spiffe://elsewhere/x"] }), "connect")
        .approvals.createApproval({ action: "deploy.staging", title: "cn" });
      expect(got.approval?.requester).toBe("ci-runner");
    } finally {
      await cn.ts.close();
    }
  });
});

describe("on_behalf_of", () => {
  let ts: TestServer;
  let requester: TestPki["requester"];
  let decider: TestPki["decider"];
  beforeAll(async () => {
    pki ??= createTestPki();
    ({ requester, decider } = pki);
    ts = await startTestServer({ pki, flags: { deciders: testIdentities.decider } });
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("is normalised at create, so a Slack mention cannot slip past the self-approval check", async () => {
    const { approvals } = ts.clients(requester, "grpc");
    const deciding = ts.clients(decider, "connect").approvals;
    for (const [given, stored] of [
      ["<@U1>", "U1"],
      ["  <@U1|alice>  ", "U1"],
      ["Alice@Example.COM", "alice@example.com"],
      ["U1", "U1"],
    ] as const) {
      const created = await approvals.createApproval({
        action: "deploy.staging",
        title: given,
        onBehalfOf: given,
      });
      expect(created.approval?.onBehalfOf).toBe(stored);
      if (stored !== "U1") continue;
      const err = await refusal(
        deciding.submitDecision({
          id: created.approval?.id ?? "",
          approver: "U1",
          decision: Decision.APPROVE,
        }),
      );
      expect(err.code).toBe(Code.PermissionDenied);
      expect((await approvals.getApproval({ id: created.approval?.id ?? "" })).approval?.state).toBe(
        State.PENDING,
      );
    }
  });

  it("refuses a malformed person with INVALID_ARGUMENT on on_behalf_of", async () => {
    for (const protocol of protocols) {
      for (const bad of ["<!here>", "<@U1", "alice smith", "@alice", "a\u0007b"]) {
        const err = await refusal(
          ts
            .clients(requester, protocol)
            .approvals.createApproval({ action: "deploy.staging", title: "x", onBehalfOf: bad }),
        );
        expect(err.code, `${protocol} ${JSON.stringify(bad)}`).toBe(Code.InvalidArgument);
        expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual([
          "on_behalf_of",
        ]);
      }
    }
  });
});

describe("a certificate that expires while its connection is open", () => {
  it("is refused with UNAUTHENTICATED at the next call on the same connection", async () => {
    const { ca, ts } = await serverWithCa({ requesters: "*" });
    try {
      const notAfter = new Date(Math.ceil((Date.now() + 4_000) / 1000) * 1000);
      const shortLived = ca.issue({ commonName: "x", uris: ["spiffe://countersign.test/short"], notAfter });
      {
        // One connection per protocol, used before and after the certificate's end.
        const clients = protocols.map((p) => ts.clients(shortLived, p).approvals);
        const ids: string[] = [];
        for (const client of clients)
          ids.push(
            (await client.createApproval({ action: "deploy.staging", title: "before" })).approval?.id ?? "",
          );
        // The certificate's end is the event waited for.
        await new Promise((resolve) => setTimeout(resolve, notAfter.getTime() - Date.now() + 50));
        for (const [i, client] of clients.entries()) {
          const err = await refusal(client.getApproval({ id: ids[i] ?? "" }));
          expect(err.code, protocols[i]).toBe(Code.Unauthenticated);
          expect(err.rawMessage).toBe(
            `the client certificate expired at ${notAfter.toISOString()}; reconnect with a valid one`,
          );
        }
      }
    } finally {
      await ts.close();
    }
  }, 30_000);
});
