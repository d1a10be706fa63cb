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

/**
 * The identity a client certificate names: the first URI SAN, else the first DNS SAN, else the subject
 * CN; undefined when the certificate names none.
 */
export function certificateIdentity(cert: PeerCertificate): string | undefined {
  const sans = (cert.subjectaltname ?? "").split(", ").filter((s) => s !== "");
  const first = (prefix: string) => sans.find((s) => s.startsWith(prefix))?.slice(prefix.length);
  const cn = cert.subject?.CN;
  return first("URI:") ?? first("DNS:") ?? (Array.isArray(cn) ? cn[0] : cn) ?? undefined;
}
