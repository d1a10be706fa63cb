/**
 * Writes a fresh test PKI (see certs.ts) as PEM files into the directory named by the first argument, for
 * tests in other languages (clients/python/tests): ca.pem, server.pem / server-key.pem, and a .pem and
 * -key.pem for each client (requester, decider, stranger), plus foreign-ca.pem and identities.json (the identities in the client certificates).
 *
 *   node --import tsx test/support/write-test-pki.ts <dir>
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTestPki, testIdentities } from "./certs.js";

const dir = process.argv[2];
if (dir === undefined) {
  process.stderr.write("usage: write-test-pki.ts <dir>\n");
  process.exit(2);
}
const pki = createTestPki();
const files: Record<string, string> = {
  "ca.pem": pki.ca,
  "foreign-ca.pem": pki.foreignCa,
  "server.pem": pki.server.cert,
  "server-key.pem": pki.server.key,
  "identities.json": JSON.stringify(testIdentities),
};
for (const name of ["requester", "decider", "stranger"] as const) {
  files[`${name}.pem`] = pki[name].cert;
  files[`${name}-key.pem`] = pki[name].key;
}
for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o600 });
