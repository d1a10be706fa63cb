import type { PeerCertificate } from "node:tls";
import { type ContextKey, createContextKey } from "@connectrpc/connect";

/** What the transport knows about the other end of a call. */
export interface Peer {
  /** The verified client certificate; absent without mutual TLS. */
  certificate?: PeerCertificate;
  /** Remote address, e.g. `127.0.0.1`. */
  address: string;
}

/** Context value set by both transports before any interceptor runs. */
export const peerKey: ContextKey<Peer> = createContextKey<Peer>({ address: "" }, { description: "peer" });

/** Where in a client certificate an identity may come from: a URI SAN, a DNS SAN, the subject CN. */
export type IdentitySource = "uri" | "dns" | "cn";

/** Every identity source, in the order they are tried. */
export const identitySources: readonly IdentitySource[] = ["uri", "dns", "cn"];

/** What a certificate says about its holder: an identity, or why it names none that may be used. */
export type CertificateIdentity = { identity: string } | { problem: string };

/**
 * The subject alternative names of Node's `subjectaltname` text, e.g. `URI:spiffe://a/b, DNS:x.y`.
 * Node writes a value that contains a comma, a quote or a control character as a JSON string, so a
 * name cannot smuggle in another one (`URI:"spiffe://a, DNS:admin"` is one URI).
 */
export function parseSubjectAltNames(text: string): { type: string; value: string }[] {
  const names: { type: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      end += 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        value = "";
      }
    } else {
      const comma = text.indexOf(", ", colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    names.push({ type, value });
    i = text.startsWith(", ", end) ? end + 2 : end;
  }
  return names;
}

const sanPrefix: Record<Exclude<IdentitySource, "cn">, string> = { uri: "URI", dns: "DNS" };

/**
 * The identity a client certificate names, taken only from the configured `sources` (first source
 * with a value wins; within a source, the first value): a URI SAN, a DNS SAN, or the subject CN. An
 * identity from one source never stands for another: a CN of `spiffe://…` is not a URI identity unless
 * CNs are a configured source. An empty or blank value is refused, as is a certificate that names none.
 */
export function certificateIdentity(
  cert: PeerCertificate,
  sources: readonly IdentitySource[] = ["uri"],
): CertificateIdentity {
  const sans = parseSubjectAltNames(cert.subjectaltname ?? "");
  for (const source of sources) {
    let value: string | undefined;
    if (source === "cn") {
      const cn = cert.subject?.CN;
      value = Array.isArray(cn) ? cn[0] : cn;
    } else {
      value = sans.find((s) => s.type === sanPrefix[source])?.value;
    }
    if (value === undefined) continue;
    if (value.trim() === "")
      return { problem: `the client certificate's ${sourceName[source]} is empty; it names no identity` };
    return { identity: value };
  }
  return {
    problem: `the client certificate has no ${sources.map((s) => sourceName[s]).join(" or ")} to take the caller's identity from`,
  };
}

const sourceName: Record<IdentitySource, string> = {
  uri: "URI SAN",
  dns: "DNS SAN",
  cn: "subject CN",
};

/**
 * Why a certificate cannot be used now: not yet valid, or expired (a connection outlives the
 * certificate it was opened with); undefined when it is within its validity.
 */
export function certificateValidityProblem(cert: PeerCertificate, now: number): string | undefined {
  const notAfter = Date.parse(cert.valid_to);
  const notBefore = Date.parse(cert.valid_from);
  if (Number.isFinite(notAfter) && now > notAfter)
    return `the client certificate expired at ${new Date(notAfter).toISOString()}; reconnect with a valid one`;
  if (Number.isFinite(notBefore) && now < notBefore)
    return `the client certificate is not valid before ${new Date(notBefore).toISOString()}`;
  return undefined;
}
