import {
  type ContentRange,
  DirPathSchema,
  FILE_CHUNK_BYTES,
  type FileInfo,
  type FileListing,
  FilePathSchema,
  type UploadProgress,
} from "../core/files.ts";
import {
  FolderNotEmptyError,
  NotFoundError,
  PayloadTooLargeError,
  UploadConflictError,
  ValidationError,
} from "../errors.ts";
import {
  deleteFile,
  type FileHelper,
  listFiles,
  type Refusal,
  readFile,
  writeChunk,
} from "./file-helpers.ts";
import { DEADLINE_RESERVE_MS, type KernelAccess } from "./kernel-access.ts";

export type { ByteRange, ContentRange } from "../core/files.ts";

/** What a `PUT` did: the file is complete (new or replaced), or a chunk of it is in. */
export type PutOutcome =
  | { done: true; created: boolean; file: FileInfo }
  | { done: false; progress: UploadProgress };

/** What a read gave: the bytes, the whole file's description, and the range when a part was read. */
export interface FileBytes {
  bytes: Buffer;
  file: FileInfo;
  /** Set for a read of a range (`206`); absent for the whole file. */
  range?: ContentRange;
}

/** How one file request is bounded. */
export interface FileLimits {
  /** Epoch ms by which the invocation must have answered. */
  deadline?: number;
}

/** Longest a file request may take in the kernel: a 4 MiB chunk takes well under a second. */
const FILE_OP_MS = 10_000;

/** The grace an interrupted helper request gets (the execution layer's default). */
const HELPER_GRACE_MS = 2_000;

/**
 * What a wait for a busy kernel leaves before the deadline: time for a 4 MiB chunk on a slow
 * backend (well under a second on local and gateway), and the grace.
 */
const FILE_OP_RESERVE_MS = 3_000 + HELPER_GRACE_MS;

/**
 * Files in and out of callers' kernels, through the kernel itself (silent helper requests, see
 * `file-helpers.ts`), so every backend serves them alike with no shared disk. Each request holds
 * the kernel's run lease as a run does, so it never interleaves with one; sizes are checked before
 * the lease is taken, so nothing too large ever reaches a kernel.
 */
export class KernelFiles {
  constructor(private readonly kernels: KernelAccess) {}

  /**
   * Writes a whole file (`chunk` undefined) or one chunk of an upload; chunks must come in order,
   * and the file appears under its name only with the last one.
   */
  async put(
    owner: string,
    kernelId: string,
    path: string,
    bytes: Buffer,
    chunk: ContentRange | undefined,
    limits: FileLimits = {},
  ): Promise<PutOutcome> {
    checkPath(path);
    const max = this.kernels.settings.files.maxFileBytes;
    const total = chunk?.total ?? bytes.length;
    if (!Number.isSafeInteger(total) || total > max) {
      throw new PayloadTooLargeError(`the file has ${total} bytes, more than the ${max} a file may have`);
    }
    if (bytes.length > FILE_CHUNK_BYTES) {
      throw new PayloadTooLargeError(
        `one request carries at most ${FILE_CHUNK_BYTES} bytes of a file; send a larger one in chunks with Content-Range`,
      );
    }
    if (chunk) checkChunk(chunk, bytes.length);
    const answer = await this.inKernel(
      owner,
      kernelId,
      limits,
      writeChunk(path, chunk?.start ?? 0, total, bytes),
    );
    if (!answer.ok) throw refused(answer, kernelId, path);
    if (!answer.done) return { done: false, progress: { path, received: answer.received } };
    return { done: true, created: answer.created, file: answer.file };
  }

  /**
   * Reads a whole file (refused with 413 over {@link FILE_CHUNK_BYTES}: read it by range) or a
   * range of it, `end` included and clipped to the file and to {@link FILE_CHUNK_BYTES} bytes.
   */
  async get(
    owner: string,
    kernelId: string,
    path: string,
    range: { start: number; end?: number } | undefined,
    limits: FileLimits = {},
  ): Promise<FileBytes> {
    checkPath(path);
    if (range) checkRange(range);
    const answer = await this.inKernel(
      owner,
      kernelId,
      limits,
      readFile(path, range ?? {}, FILE_CHUNK_BYTES, this.kernels.settings.files.maxFileBytes),
    );
    if (!answer.ok) throw refused(answer, kernelId, path);
    const bytes = Buffer.from(answer.data, "base64");
    if (!answer.range) return { bytes, file: answer.file };
    const [start, end] = answer.range;
    return { bytes, file: answer.file, range: { start, end, total: answer.file.size } };
  }

  /** Deletes a file or an empty folder; a folder with content is refused (409), a missing file is 404. */
  async remove(owner: string, kernelId: string, path: string, limits: FileLimits = {}): Promise<void> {
    checkPath(path);
    const answer = await this.inKernel(owner, kernelId, limits, deleteFile(path));
    if (!answer.ok) throw refused(answer, kernelId, path);
  }

  /**
   * What is under `dir` ("" is the working directory), recursively or not: files and folders,
   * never symbolic links, temporary uploads, `__pycache__` or `.ipynb_checkpoints`; sorted by path,
   * at most 1,000 entries (then `truncated`).
   */
  async list(
    owner: string,
    kernelId: string,
    dir: string,
    recursive: boolean,
    limits: FileLimits = {},
  ): Promise<FileListing> {
    const parsed = DirPathSchema.safeParse(dir);
    if (!parsed.success) throw invalidPath(parsed.error.issues[0]?.message);
    const answer = await this.inKernel(owner, kernelId, limits, listFiles(dir, recursive));
    if (!answer.ok) throw refused(answer, kernelId, dir, "folder");
    return { files: answer.files, truncated: answer.truncated };
  }

  /** Runs a file helper in the caller's kernel under its lease, bounded by the deadline. */
  private inKernel<T>(
    owner: string,
    kernelId: string,
    limits: FileLimits,
    helper: FileHelper<T>,
  ): Promise<T> {
    const { deadline } = limits;
    return this.kernels.withLease(
      owner,
      kernelId,
      {
        ...(deadline === undefined ? {} : { deadline }),
        workMs: FILE_OP_MS + HELPER_GRACE_MS,
        reserveMs: FILE_OP_RESERVE_MS,
      },
      (ref) => {
        const left =
          (deadline ?? Number.POSITIVE_INFINITY) - Date.now() - DEADLINE_RESERVE_MS - HELPER_GRACE_MS;
        const timeoutMs = Math.max(100, Math.min(FILE_OP_MS, left));
        return this.kernels.backend.helper(ref, { ...helper, timeoutMs });
      },
    );
  }
}

/** The path's shape, checked again here (the HTTP edge has): nothing malformed reaches a kernel. */
function checkPath(path: string): void {
  const parsed = FilePathSchema.safeParse(path);
  if (!parsed.success) throw invalidPath(parsed.error.issues[0]?.message);
}

function invalidPath(message = "is not allowed"): ValidationError {
  return new ValidationError(`invalid path: ${message}`, [{ path: "path", message }]);
}

/** A chunk's range must be whole numbers, `start ≤ end < total`, and say exactly the body's length. */
function checkChunk(chunk: ContentRange, length: number): void {
  const { start, end, total } = chunk;
  if (![start, end, total].every(Number.isSafeInteger) || start < 0 || end < start || end >= total) {
    throw new ValidationError("Content-Range: first ≤ last < total is required");
  }
  if (end - start + 1 !== length) {
    throw new ValidationError(
      `Content-Range says ${end - start + 1} bytes, the body has ${length}: they must be the same`,
    );
  }
}

function checkRange(range: { start: number; end?: number }): void {
  const { start, end } = range;
  const whole = (n: number) => Number.isSafeInteger(n) && n >= 0;
  if (!whole(start) || (end !== undefined && (!whole(end) || end < start))) {
    throw new ValidationError("Range: first ≤ last, both whole numbers, is required");
  }
}

/**
 * A kernel's refusal in the project's errors. A missing file is said in one wording whatever was
 * missing on the way (as another caller's kernel is said like no kernel).
 */
function refused(refusal: Refusal, kernelId: string, path: string, kind = "file"): Error {
  switch (refusal.reason) {
    case "not_found":
      return new NotFoundError(`no ${kind} '${path}' in kernel '${kernelId}'`);
    case "conflict":
      return new UploadConflictError(refusal.message, refusal.received ?? 0);
    case "not_empty":
      return new FolderNotEmptyError(refusal.message);
    case "too_large":
    case "no_space":
      return new PayloadTooLargeError(refusal.message);
    case "invalid":
    case "range":
      return new ValidationError(refusal.message);
  }
}
