import * as z from "zod";
import { InstantSchema } from "./kernel.ts";

/**
 * Files in and out of a kernel: the words the HTTP edge, the service and the clients share. Paths
 * are relative to the kernel's working directory (the one it started in) and checked here, before
 * anything reaches a kernel.
 */

/** Most file bytes one request or one response carries: Lambda's 6 MB, less base64's third. */
export const FILE_CHUNK_BYTES = 4 * 1024 * 1024;

/** Longest path, and longest name in it, in UTF-8 bytes (Linux's PATH_MAX and NAME_MAX). */
export const MAX_PATH_BYTES = 4_096;
const MAX_NAME_BYTES = 255;

const bytesOf = (text: string) => Buffer.byteLength(text, "utf8");

/** Why a relative path may not be used, or undefined when it may (`dir`: a trailing `/` is fine). */
function pathProblem(path: string, dir: boolean): string | undefined {
  if (path.includes("\0")) return "contains a NUL byte";
  if (bytesOf(path) > MAX_PATH_BYTES) return `is longer than ${MAX_PATH_BYTES} bytes`;
  if (path.startsWith("/")) return "must be relative to the kernel's working directory";
  const segments = (dir ? path.replace(/\/+$/, "") : path).split("/");
  for (const segment of segments) {
    if (segment === "") return "has an empty segment";
    if (segment === "." || segment === "..") return "may not contain . or .. segments";
    if (bytesOf(segment) > MAX_NAME_BYTES) return `has a name longer than ${MAX_NAME_BYTES} bytes`;
  }
  return undefined;
}

/** A file's path: relative, no `.`/`..` segments, no NUL, names ≤ 255 bytes, ≤ 4,096 bytes in all. */
export const FilePathSchema = z
  .string()
  .min(1, "is empty")
  .superRefine((path, ctx) => {
    const problem = pathProblem(path, false);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/** A folder to list: as {@link FilePathSchema}, with a trailing `/` allowed; empty is the working directory. */
export const DirPathSchema = z.string().superRefine((path, ctx) => {
  const problem = path === "" ? undefined : pathProblem(path, true);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** A file as a write left it (`PUT` 200/201): its bytes' size and SHA-256 (also the `ETag` of reads). */
export const FileInfoSchema = z
  .strictObject({
    path: z.string(),
    size: z.number().int().min(0),
    mtime: InstantSchema,
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .meta({ description: "A file in the kernel's working directory." });

/** A file in the kernel's working directory, as {@link FileInfoSchema} describes it. */
export type FileInfo = z.infer<typeof FileInfoSchema>;

/** A chunked upload under way (`PUT` with `Content-Range`, 202): the bytes the kernel holds so far. */
export const UploadProgressSchema = z
  .strictObject({ path: z.string(), received: z.number().int().min(0) })
  .meta({ description: "A chunked upload still under way: send the chunk starting at `received`." });

/** An upload under way, as {@link UploadProgressSchema} describes it. */
export type UploadProgress = z.infer<typeof UploadProgressSchema>;

/** One entry of a listing. */
export const FileEntrySchema = z.strictObject({
  path: z.string(),
  size: z.number().int().min(0),
  mtime: InstantSchema,
  kind: z.enum(["file", "dir"]),
});

/** One entry of a listing, as {@link FileEntrySchema} describes it. */
export type FileEntry = z.infer<typeof FileEntrySchema>;

/** `GET /kernels/{kernelId}/files`: what is under a folder, capped. */
export const FileListingSchema = z
  .strictObject({
    files: z.array(FileEntrySchema),
    truncated: z.boolean().meta({ description: "More entries exist than a listing returns." }),
  })
  .meta({ description: "The files and folders under a folder of the kernel's working directory." });

/** A listing, as {@link FileListingSchema} describes it. */
export type FileListing = z.infer<typeof FileListingSchema>;

/** A byte range as HTTP writes it: `start` and `end` both included. */
export interface ByteRange {
  start: number;
  end: number;
}

/** A range of a whole of `total` bytes (`Content-Range: bytes start-end/total`). */
export interface ContentRange extends ByteRange {
  total: number;
}
