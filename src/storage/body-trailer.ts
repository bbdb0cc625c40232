/**
 * The trailer that ends a body streamed to the remote helper without an announced length
 * (`xput PATH EXCL - - [PADTO]`): both ends agree on it here. A cut stream cannot end in a
 * valid trailer for the bytes before it, so the helper stores nothing.
 */

/** Length of the trailer: 16 hex digits of the body's length, then its 64-hex-digit sha256. */
export const TRAILER_BYTES = 80;

/** The trailer for a body of `bytes` bytes with sha256 `sha256hex`. */
export function bodyTrailer(bytes: number, sha256hex: string): Buffer {
  return Buffer.from(`${bytes.toString(16).padStart(16, "0")}${sha256hex}`, "latin1");
}

/** Length and sha256 a trailer announces; undefined when `held` is no trailer. */
export function parseTrailer(held: Buffer): { bytes: number; sha256: string } | undefined {
  const t = held.toString("latin1");
  if (held.length !== TRAILER_BYTES || !/^[0-9a-f]{80}$/.test(t)) return undefined;
  return { bytes: parseInt(t.slice(0, 16), 16), sha256: t.slice(16) };
}
