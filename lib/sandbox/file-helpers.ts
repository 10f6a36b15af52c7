import { createHash } from "node:crypto";
import * as z from "zod";
import { FileEntrySchema, FileInfoSchema } from "../core/files.ts";
import { artifactsSetupCode } from "../jupyter/artifacts.ts";
import { FILE_OPERATIONS_PY } from "./kernel-python/file-operations.ts";
import { FILE_PATHS_PY } from "./kernel-python/file-paths.ts";

/*
 * The kernel side of files: Python that a silent helper request (see `HelperRequest` in
 * `lib/backends/port.ts`) runs in the kernel, so files move the same way on every backend. Each
 * builder here is pure: it returns the request's `code`, `expression` and the `schema` of its answer.
 *
 * Safety, kernel-side (the TS side has checked the path's shape already, and it is checked again):
 * - the root is the folder the kernel started in, recorded at start (`sys.modules["_pybox"].root`),
 *   so an `os.chdir` of the caller's code does not move it;
 * - a path is walked one folder at a time from the root's real path, with descriptors: a folder
 *   that is a symbolic link is followed only when its real path is inside the root, and folders
 *   made for an upload are made inside the folder just checked;
 * - the file itself is opened with O_NOFOLLOW (a symbolic link is refused, never its target's bytes);
 * - an upload goes to a hidden `.pybox-upload-<hash>` beside its target and is renamed over it
 *   only when complete; chunks must continue it exactly, or nothing is written.
 * Paths and bytes reach Python as base64 literals, never as source text of ours.
 */

/** The kernel's own code for files, installed once per kernel (and again after a change of it). */
const SOURCE = FILE_PATHS_PY + FILE_OPERATIONS_PY;

/** Identifies {@link SOURCE}: a kernel holding another version installs this one. */
const VERSION = createHash("sha256").update(SOURCE).digest("hex").slice(0, 16);

/** Installs the helpers into `sys.modules["_pybox_files"]` unless this version is there; touches no user name. */
const INSTALL = `if getattr(__import__("sys").modules.get("_pybox_files"), "VERSION", None) != "${VERSION}": exec(${JSON.stringify(SOURCE)}, {"VERSION": "${VERSION}", "__name__": "_pybox_files"})`;

/** An upload that took no chunk for this long is abandoned: its temporary file goes at the next chance. */
export const ABANDONED_UPLOAD_SECONDS = 3_600;

/** Most entries one listing returns. */
export const LISTING_MAX_ENTRIES = 1_000;

/** Why the kernel refused an operation; `files.ts` says it in the project's errors. */
export const RefusalSchema = z.object({
  ok: z.literal(false),
  reason: z.enum(["not_found", "invalid", "conflict", "not_empty", "too_large", "range", "no_space"]),
  message: z.string(),
  /** Conflicting chunks: the bytes of the upload the kernel holds. */
  received: z.number().int().min(0).optional(),
  /** Reads too large or out of range: the file's size. */
  size: z.number().int().min(0).optional(),
});

/** A refusal, as the kernel gives it. */
export type Refusal = z.infer<typeof RefusalSchema>;

const WrittenSchema = z.union([
  RefusalSchema,
  z.object({ ok: z.literal(true), done: z.literal(false), received: z.number().int().min(0) }),
  z.object({ ok: z.literal(true), done: z.literal(true), created: z.boolean(), file: FileInfoSchema }),
]);

const ReadSchema = z.union([
  RefusalSchema,
  z.object({
    ok: z.literal(true),
    file: FileInfoSchema,
    data: z.string(),
    /** The bytes read, both ends included, when a range was read. */
    range: z.tuple([z.number().int().min(0), z.number().int().min(-1)]).nullable(),
  }),
]);

const DeletedSchema = z.union([RefusalSchema, z.object({ ok: z.literal(true) })]);

const ListedSchema = z.union([
  RefusalSchema,
  z.object({ ok: z.literal(true), files: z.array(FileEntrySchema), truncated: z.boolean() }),
]);

/** What the kernel answered an upload's chunk (or a whole file). */
export type WriteAnswer = z.infer<typeof WrittenSchema>;
/** What the kernel answered a read. */
export type ReadAnswer = z.infer<typeof ReadSchema>;
/** What the kernel answered a delete. */
export type DeleteAnswer = z.infer<typeof DeletedSchema>;
/** What the kernel answered a listing. */
export type ListAnswer = z.infer<typeof ListedSchema>;

/** A helper request but for its time bound, which the caller sets. */
export interface FileHelper<T> {
  code: string;
  expression: string;
  schema: z.ZodType<T>;
}

/** One call of the installed helpers: arguments as base64 JSON, bytes as a base64 literal. */
function helper<T>(schema: z.ZodType<T>, args: Record<string, unknown>, payload?: Buffer): FileHelper<T> {
  const request = Buffer.from(
    JSON.stringify({ ...args, abandonAfter: ABANDONED_UPLOAD_SECONDS }),
    "utf8",
  ).toString("base64");
  const bytes = payload === undefined ? "" : `, "${payload.toString("base64")}"`;
  return {
    code: INSTALL,
    // The bytes go in the expression, which the kernel evaluates without IPython's input
    // transformations: a 4 MiB chunk costs a compile, not a tokenisation of 5.6 MB of source.
    expression: `__import__("sys").modules["_pybox_files"].call("${request}"${bytes})`,
    schema,
  };
}

/** Records the kernel's root (its working directory now), at start and after a restart. */
export function recordRoot(): FileHelper<null> {
  const request = helper(z.null(), { op: "root" });
  // The artifacts tracker starts from the same root, in the same request (no extra round trip).
  return { ...request, code: `${request.code}\n${artifactsSetupCode()}` };
}

/**
 * Writes `bytes` at `start` of an upload of `total` bytes to `path`: the first chunk (start 0)
 * begins the upload afresh; the last one renames it over the target. A whole file is one chunk.
 */
export function writeChunk(
  path: string,
  start: number,
  total: number,
  bytes: Buffer,
): FileHelper<WriteAnswer> {
  return helper(WrittenSchema, { op: "write", path, start, total }, bytes);
}

/**
 * Reads `path`: all of it when `start` is undefined (refused over `most` bytes), or from `start`
 * to `end` (inclusive; the end of the file when undefined), at most `most` bytes. A file over
 * `limit` bytes is refused before its SHA-256 is taken.
 */
export function readFile(
  path: string,
  range: { start?: number; end?: number },
  most: number,
  limit: number,
): FileHelper<ReadAnswer> {
  const { start, end } = range;
  return helper(ReadSchema, {
    op: "read",
    path,
    most,
    limit,
    ...(start === undefined ? {} : { start }),
    ...(end === undefined ? {} : { end }),
  });
}

/** Deletes a file or an empty folder. */
export function deleteFile(path: string): FileHelper<DeleteAnswer> {
  return helper(DeletedSchema, { op: "delete", path });
}

/** Lists `dir` ("" is the root), recursively or not, at most `most` entries. */
export function listFiles(
  dir: string,
  recursive: boolean,
  most = LISTING_MAX_ENTRIES,
): FileHelper<ListAnswer> {
  return helper(ListedSchema, { op: "list", dir, recursive, most });
}

/**
 * Removes temporary uploads older than `olderThanSeconds` (0: all) under the root, giving up after
 * about `budgetSeconds` or 50,000 entries: a clean-up, never a reason to hold a kernel.
 */
export function sweepUploads(olderThanSeconds: number, budgetSeconds: number): FileHelper<null> {
  return helper(z.null(), { op: "sweep", olderThan: olderThanSeconds, budget: budgetSeconds });
}
