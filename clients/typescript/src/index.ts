/**
 * `@pybox-serverless/client`: the typed TypeScript client of pybox-serverless.
 *
 * ```ts
 * const pybox = new PyboxClient({ baseUrl, token });
 * const { kernelId } = await pybox.start();
 * const result = await pybox.run(kernelId, "print(6 * 7)");
 * ```
 */

export { type AwsCredentials, bearerAuth, signingRegion, sigv4Auth, type TokenSource } from "./auth.ts";
export {
  type CallOptions,
  type ListOptions,
  PyboxClient,
  type PyboxClientOptions,
  type RunAsyncOptions,
  type RunOptions,
  SYNC_RUN_LIMIT_MS,
  type WaitOptions,
} from "./client.ts";
export {
  type ClientErrorCode,
  type ErrorDetails,
  isNotFound,
  PyboxError,
  type PyboxErrorCode,
  type PyboxErrorOptions,
  PyboxNotFoundError,
} from "./errors.ts";
export { encodeFilePath, FILE_CHUNK_BYTES } from "./files.ts";
export type { components, operations, paths } from "./openapi.js";
export { DEFAULT_RETRY, type RetryOptions, retryAfterMs } from "./retry.ts";
export type {
  Artifact,
  ErrorBody,
  FileEntry,
  FileInfo,
  FileListing,
  KernelView,
  RunError,
  RunEvent,
  RunResult,
  RunStatus,
  RunView,
  ServiceErrorCode,
  StartedKernel,
  StartOptions,
  UploadProgress,
} from "./types.ts";
