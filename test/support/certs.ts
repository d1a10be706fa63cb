import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import forge from "node-forge";

/** A PEM certificate with its key. */
export interface Pem {
  cert: string;
  key: string;
}

/** What a test certificate says about its subject. */
export interface CertSubject {
  commonName: string;
  /** Subject alternative names. */
  uris?: string[];
  dns?: string[];
  ips?: string[];
  /** Validity; defaults to one day back to one year ahead. */
  notBefore?: Date;
  notAfter?: Date;
}

const keySize = 2048;

function newCertificate(subject: CertSubject, publicKey: forge.pki.PublicKey): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = `01${forge.util.bytesToHex(forge.random.getBytesSync(8))}`;
  cert.validity.notBefore = subject.notBefore ?? new Date(Date.now() - 86_400_000);
  cert.validity.notAfter = subject.notAfter ?? new Date(Date.now() + 365 * 86_400_000);
  cert.setSubject([{ name: "commonName", value: subject.commonName }]);
  return cert;
}

/** A test certificate authority that issues server and client certificates. */
export class TestCa {
  readonly cert: string;
  private readonly caCert: forge.pki.Certificate;
  private readonly caKey: forge.pki.rsa.PrivateKey;

  constructor(name = "Countersign Test CA") {
    const keys = forge.pki.rsa.generateKeyPair(keySize);
    const cert = newCertificate({ commonName: name }, keys.publicKey);
    cert.setIssuer(cert.subject.attributes);
    cert.setExtensions([
      { name: "basicConstraints", cA: true, critical: true },
      { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
      { name: "subjectKeyIdentifier" },
    ]);
    cert.sign(keys.privateKey, forge.md.sha256.create());
    this.caCert = cert;
    this.caKey = keys.privateKey;
    this.cert = forge.pki.certificateToPem(cert);
  }

  /** Issues a certificate for `subject`, for server and client authentication. */
  issue(subject: CertSubject): Pem {
    const keys = forge.pki.rsa.generateKeyPair(keySize);
    const cert = newCertificate(subject, keys.publicKey);
    cert.setIssuer(this.caCert.subject.attributes);
    const altNames = [
      ...(subject.uris ?? []).map((value) => ({ type: 6, value })),
      ...(subject.dns ?? []).map((value) => ({ type: 2, value })),
      ...(subject.ips ?? []).map((ip) => ({ type: 7, ip })),
    ];
    cert.setExtensions([
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
      { name: "extKeyUsage", serverAuth: true, clientAuth: true },
      ...(altNames.length > 0 ? [{ name: "subjectAltName", altNames }] : []),
    ]);
    cert.sign(this.caKey, forge.md.sha256.create());
    return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
  }
}

/** Writes PEM files into a new temporary directory and returns their paths. */
export function writePemFiles(files: Record<string, string>): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), "countersign-certs-"));
  const paths: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    const path = join(dir, name);
    writeFileSync(path, content, { mode: 0o600 });
    paths[name] = path;
  }
  return paths;
}

/** The certificates an integration test needs: one CA, a server and three clients, plus a foreign CA. */
export interface TestPki {
  ca: string;
  server: Pem;
  requester: Pem;
  decider: Pem;
  stranger: Pem;
  /** A client certificate from another CA. */
  foreign: Pem;
  foreignCa: string;
  /** Paths of the server's files. */
  paths: { ca: string; serverCert: string; serverKey: string };
}

/**
 * Identities in the test certificates: URI SANs, where the server takes identities from by default
 * (`--identity-from uri`). Each certificate also has a DNS SAN or CN that must not stand for it.
 */
export const testIdentities = {
  requester: "spiffe://countersign.test/ci-pipeline",
  decider: "spiffe://countersign.test/slack-gateway",
  stranger: "spiffe://countersign.test/stranger",
} as const;

/** Makes a fresh test PKI (RSA keys by Node's native generator through forge: well under a second each). */
export function createTestPki(): TestPki {
  const ca = new TestCa();
  const foreignCa = new TestCa("Foreign CA");
  const server = ca.issue({ commonName: "localhost", dns: ["localhost"], ips: ["127.0.0.1", "::1"] });
  const pki = {
    ca: ca.cert,
    server,
    requester: ca.issue({ commonName: "ci", uris: [testIdentities.requester], dns: ["ci.countersign.test"] }),
    decider: ca.issue({
      commonName: "gateway",
      uris: [testIdentities.decider],
      dns: ["slack-gateway.countersign.test"],
    }),
    stranger: ca.issue({ commonName: "stranger", uris: [testIdentities.stranger] }),
    foreign: foreignCa.issue({ commonName: "intruder", uris: [testIdentities.requester] }),
    foreignCa: foreignCa.cert,
  };
  const files = writePemFiles({ "ca.pem": ca.cert, "server.pem": server.cert, "server-key.pem": server.key });
  return {
    ...pki,
    paths: {
      ca: files["ca.pem"] as string,
      serverCert: files["server.pem"] as string,
      serverKey: files["server-key.pem"] as string,
    },
  };
}
