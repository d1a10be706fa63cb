import type { PeerCertificate } from "node:tls";
import { describe, expect, it } from "vitest";
import { certificateIdentity, certificateValidityProblem, parseSubjectAltNames } from "./peer.js";

const cert = (subjectaltname: string | undefined, cn?: string): PeerCertificate =>
  ({ subjectaltname, subject: cn === undefined ? {} : { CN: cn } }) as unknown as PeerCertificate;

describe("parseSubjectAltNames", () => {
  it("reads plain and JSON-quoted values, so a value cannot smuggle in another name", () => {
    expect(parseSubjectAltNames('URI:"spiffe://a\\u002c DNS:admin", URI:"spiffe://b\\"c", DNS:x.y')).toEqual([
      { type: "URI", value: "spiffe://a, DNS:admin" },
      { type: "URI", value: 'spiffe://b"c' },
      { type: "DNS", value: "x.y" },
    ]);
    expect(parseSubjectAltNames("URI:")).toEqual([{ type: "URI", value: "" }]);
    expect(parseSubjectAltNames("")).toEqual([]);
  });
});

describe("certificateIdentity", () => {
  it("takes the first value of the first configured source, never another source's", () => {
    const both = cert("DNS:host.example, URI:spiffe://x/ci", "spiffe://x/admin");
    expect(certificateIdentity(both)).toEqual({ identity: "spiffe://x/ci" });
    expect(certificateIdentity(both, ["dns", "uri"])).toEqual({ identity: "host.example" });
    expect(certificateIdentity(both, ["cn"])).toEqual({ identity: "spiffe://x/admin" });
    expect(certificateIdentity(cert(undefined, "spiffe://x/ci"))).toEqual({
      problem: "the client certificate has no URI SAN to take the caller's identity from",
    });
    expect(certificateIdentity(cert("URI: ", "x"), ["uri", "cn"])).toEqual({
      problem: "the client certificate's URI SAN is empty; it names no identity",
    });
  });
});

describe("certificateValidityProblem", () => {
  it("names an expired or not yet valid certificate", () => {
    const c = {
      valid_from: "Jan  1 00:00:00 2026 GMT",
      valid_to: "Jan  2 00:00:00 2026 GMT",
    } as PeerCertificate;
    expect(certificateValidityProblem(c, Date.UTC(2026, 0, 1, 12))).toBeUndefined();
    expect(certificateValidityProblem(c, Date.UTC(2026, 0, 3))).toBe(
      "the client certificate expired at 2026-01-02T00:00:00.000Z; reconnect with a valid one",
    );
    expect(certificateValidityProblem(c, Date.UTC(2025, 11, 31))).toBe(
      "the client certificate is not valid before 2026-01-01T00:00:00.000Z",
    );
  });
});
