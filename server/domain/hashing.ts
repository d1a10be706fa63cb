import { createHash } from "node:crypto";
import canonicalize from "canonicalize";
import type { JsonValue } from "./types.js";

/** RFC 8785 (JCS) canonical JSON of a value. */
export function canonicalJson(value: JsonValue): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError("value has no canonical JSON form");
  return text;
}

/** Lower-case hex SHA-256 of a string or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Lower-case hex SHA-256 of the canonical JSON of a value: the payload hash of params. */
export function canonicalSha256(value: JsonValue): string {
  return sha256Hex(canonicalJson(value));
}
