import mime from "mime/lite";
import { type ContentRange, FilePathSchema } from "../core/files.ts";
import { ValidationError } from "../errors.ts";

/**
 * What the file routes read off a request beyond its JSON: the file's path (from the raw path, so
 * an encoded `%2F` is a separator to check, never a way around the check), `Content-Range` of a
 * chunk and `Range` of a read. Every malformed header is a 400 before any kernel work.
 */

/**
 * The file path of `/kernels/{kernelId}/files/{path+}`, each segment percent-decoded once and the
 * whole checked by {@link FilePathSchema}. Taken from `rawPath` rather than the decoded path
 * parameter, so what is checked is exactly what the caller sent.
 */
export function filePathOf(rawPath: string): string {
  const marker = /^\/kernels\/[^/]+\/files\//.exec(rawPath);
  if (!marker) throw new ValidationError("invalid path: no file path after /files/");
  let decoded: string;
  try {
    decoded = rawPath
      .slice(marker[0].length)
      .split("/")
      .map((segment) => decodeURIComponent(segment))
      .join("/");
  } catch {
    throw new ValidationError("invalid path: not valid percent-encoding");
  }
  const parsed = FilePathSchema.safeParse(decoded);
  if (!parsed.success) {
    const message = parsed.error.issues[0]?.message ?? "is not allowed";
    throw new ValidationError(`invalid path: ${message}`, [{ path: "path.path", message }]);
  }
  return parsed.data;
}

/** `Content-Range` of an upload chunk, as parsed (and as the OpenAPI document states it). */
export const CONTENT_RANGE = /^bytes (\d{1,16})-(\d{1,16})\/(\d{1,16})$/;

/** `Range` of a read: one range, its end optional. */
export const RANGE = /^bytes=(\d{1,16})-(\d{0,16})$/;

/**
 * `Content-Range: bytes a-b/total` of one chunk of an upload, or undefined for a whole file. Only
 * the header's form is checked here; `KernelFiles.put` checks the numbers against the body.
 */
export function chunkOf(header: string | undefined): ContentRange | undefined {
  if (header === undefined) return undefined;
  const match = CONTENT_RANGE.exec(header.trim());
  if (!match) throw new ValidationError("Content-Range must be 'bytes <first>-<last>/<total>'");
  return { start: Number(match[1]), end: Number(match[2]), total: Number(match[3]) };
}

/** `Range: bytes=a-b` or `bytes=a-` of a read (one range), or undefined for the whole file. */
export function rangeOf(header: string | undefined): { start: number; end?: number } | undefined {
  if (header === undefined) return undefined;
  const match = RANGE.exec(header.trim());
  if (!match) throw new ValidationError("Range must be one range 'bytes=<first>-[<last>]'");
  const start = Number(match[1]);
  if (match[2] === "") return { start };
  const end = Number(match[2]);
  if (end < start) throw new ValidationError("Range: first ≤ last is required");
  return { start, end };
}

/** The `Content-Type` of a file by its name; unknown names are plain bytes. */
export function contentTypeOf(path: string): string {
  return mime.getType(path) ?? "application/octet-stream";
}
