import { PyboxError } from "./errors.ts";

/**
 * Bytes per file request, each way: the service's limit (`FILE_CHUNK_BYTES`), set by Lambda's 6 MB
 * payload with binary bodies travelling as base64.
 */
export const FILE_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * A relative file path for the URL, each segment percent-encoded: a `/` inside a name can never
 * be mistaken for a folder, and `?`, `#` or `%` in a name stay part of it.
 */
export function encodeFilePath(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

/** Inclusive byte ranges `[first, last]` covering `total` bytes in pieces of at most `chunk`. */
export function chunkRanges(total: number, chunk: number = FILE_CHUNK_BYTES): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (let first = 0; first < total; first += chunk) ranges.push([first, Math.min(first + chunk, total) - 1]);
  return ranges;
}

/** `Content-Range: bytes <first>-<last>/<total>` of a ranged read, as numbers. */
export function parseContentRange(header: string | null): { first: number; last: number; total: number } {
  const match = header === null ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim());
  if (!match) {
    throw new PyboxError(502, "UNEXPECTED_REPLY", "a ranged read came back without a usable Content-Range");
  }
  return { first: Number(match[1]), last: Number(match[2]), total: Number(match[3]) };
}

/** The SHA-256 an ETag names: the service quotes the file's hex digest. */
export function etagDigest(etag: string | null): string | undefined {
  const match = etag === null ? null : /^(?:W\/)?"?([0-9a-f]{64})"?$/.exec(etag.trim());
  return match?.[1];
}

/** Hex SHA-256 of bytes, by the platform's native Web Crypto (files run to hundreds of MiB). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
