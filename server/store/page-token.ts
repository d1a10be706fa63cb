import { ValidationError } from "../domain/errors.js";

/** Encodes the id of the last approval of a page as an opaque page token. */
export function encodePageToken(lastId: string): string {
  return Buffer.from(`v1:${lastId}`).toString("base64url");
}

/**
 * Decodes a page token into the id after which the next page starts.
 * @throws ValidationError for a token this store did not make
 */
export function decodePageToken(token: string): string {
  const text = Buffer.from(token, "base64url").toString();
  if (!text.startsWith("v1:") || !/^[A-Za-z0-9_-]{1,64}$/.test(text.slice(3))) {
    throw ValidationError.of("page_token", "is not a token from a previous page");
  }
  return text.slice(3);
}
