import type { RunError, RunResult } from "./core/run-result.ts";

/**
 * Every error the product raises. Adapters translate foreign errors (AWS SDK, ZeroMQ, kernel
 * replies) into these where they meet them; `lib/http/error-handler.ts` is the one place that
 * turns a `code` into an HTTP status.
 */

/** Machine-readable codes shown to callers in `{"error": {"code", "message"}}`. */
export type ErrorCode =
  | "INVALID_REQUEST"
  | "UNAUTHENTICATED"
  | "NOT_FOUND"
  | "METHOD_NOT_ALLOWED"
  | "KERNEL_BUSY"
  | "KERNEL_DEAD"
  | "KERNEL_STARTING"
  | "KERNEL_STOPPED"
  | "RUN_CONFLICT"
  | "UPLOAD_CONFLICT"
  | "FOLDER_NOT_EMPTY"
  | "PAYLOAD_TOO_LARGE"
  | "CAPACITY"
  | "BACKEND_UNAVAILABLE"
  | "KERNEL_LAUNCH_FAILED"
  | "HOST_SHARED"
  | "BACKEND_ERROR"
  | "RUN_OUTCOME_UNKNOWN"
  | "STORE_UNAVAILABLE"
  | "QUEUE_UNAVAILABLE"
  | "INTERNAL";

interface ErrorOptions {
  cause?: unknown;
  /** Seconds a caller should wait before retrying (becomes `Retry-After`). */
  retryAfterSeconds?: number;
}

/**
 * Base of the hierarchy. `expose` says whether `message` may be shown to the caller: client
 * errors explain themselves, server errors say only what failed, never how.
 */
export abstract class PyboxError extends Error {
  abstract readonly code: ErrorCode;
  readonly expose: boolean = true;
  readonly retryAfterSeconds: number | undefined;

  constructor(message: string, options: ErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}

/** The request is malformed or breaks a rule of the API; nothing was changed. */
export class ValidationError extends PyboxError {
  readonly code = "INVALID_REQUEST";
  /** Field-level details (path and message), safe to show. */
  readonly issues: ReadonlyArray<{ path: string; message: string }>;
  constructor(message: string, issues: ReadonlyArray<{ path: string; message: string }> = []) {
    super(message);
    this.issues = issues;
  }
}

/** No caller identity could be found in the request's authorizer context. */
export class UnauthenticatedError extends PyboxError {
  readonly code = "UNAUTHENTICATED";
}

/** The caller has no kernel (or run) by that id; also what another caller's kernel looks like. */
export class NotFoundError extends PyboxError {
  readonly code = "NOT_FOUND";
}

/** A known route was called with a method it does not serve. */
export class MethodNotAllowedError extends PyboxError {
  readonly code = "METHOD_NOT_ALLOWED";
  constructor(
    message: string,
    readonly allow: readonly string[],
  ) {
    super(message);
  }
}

/** Another run holds the kernel; runs on one kernel are serialised so a timeout interrupts only its own code. */
export class KernelBusyError extends PyboxError {
  readonly code = "KERNEL_BUSY";
}

/** The kernel process is gone; its state is lost and `POST /kernels` starts a fresh one. */
export class KernelDeadError extends PyboxError {
  readonly code = "KERNEL_DEAD";
}

/** A start of this kernel is still in progress elsewhere and did not finish in time. */
export class KernelStartingError extends PyboxError {
  readonly code = "KERNEL_STARTING";
}

/** The kernel was stopped (`DELETE`) while this start was bringing it up. */
export class KernelStoppedError extends PyboxError {
  readonly code = "KERNEL_STOPPED";
}

/** The request (or the code in it) is larger than the configured limit. */
export class PayloadTooLargeError extends PyboxError {
  readonly code = "PAYLOAD_TOO_LARGE";
}

/** The backend refused a new kernel for lack of capacity (quota, resource limits); the message is the backend's. */
export class CapacityError extends PyboxError {
  readonly code = "CAPACITY";
}

/** A kernel was asked for but never became ready; the message carries the platform's reason (e.g. an image pull error). */
export class KernelLaunchError extends PyboxError {
  readonly code = "KERNEL_LAUNCH_FAILED";
}

/** The backend could not be reached or could not give us a kernel in time; worth retrying. */
export class BackendUnavailableError extends PyboxError {
  readonly code = "BACKEND_UNAVAILABLE";
  override readonly expose = false;
}

/**
 * The backend runs every caller's kernels on one host as one user, and this deployment already
 * serves another caller: waiting changes nothing (clients do not retry it). An operator decides.
 */
export class HostSharedError extends PyboxError {
  readonly code = "HOST_SHARED";
}

/** The backend (or the kernel) answered in a way the protocol does not allow. */
export class BackendError extends PyboxError {
  readonly code = "BACKEND_ERROR";
  override readonly expose = false;
}

/**
 * Helper code of ours raised in the kernel. Carries the exception, so a caller can say what it
 * means (a missing folder is the caller's 400, anything else our 502).
 */
export class KernelCodeError extends BackendError {
  constructor(
    message: string,
    readonly error: RunError,
  ) {
    super(message);
  }
}

/**
 * The way to the kernel was lost after the code went out, with the kernel alive as far as we know:
 * the code may have run. Not marked retryable, so no caller runs it twice by following our advice.
 */
export class RunOutcomeUnknownError extends PyboxError {
  readonly code = "RUN_OUTCOME_UNKNOWN";
}

/**
 * The backend refused our credentials (a rotated token or kubeconfig): a 502 for the caller, and
 * the signal for the backend to read its credentials afresh before the next call.
 */
export class CredentialsRejectedError extends PyboxError {
  readonly code = "BACKEND_ERROR";
  override readonly expose = false;
}

/** DynamoDB could not be reached or kept throttling after retries. */
export class StoreUnavailableError extends PyboxError {
  readonly code = "STORE_UNAVAILABLE";
  override readonly expose = false;
}

/** SQS refused or could not be reached when a run was queued; nothing was queued. */
export class QueueUnavailableError extends PyboxError {
  readonly code = "QUEUE_UNAVAILABLE";
  override readonly expose = false;
}

/** A `runId` given again with different code: a retried POST must repeat the first one exactly. */
export class RunConflictError extends PyboxError {
  readonly code = "RUN_CONFLICT";
}

/**
 * Internal to the queue consumer: the message could not be handled yet (the kernel is busy with
 * another run, still starting, or a peer asked us to back off) and nothing of it ran; it goes
 * back on the queue to be tried after `retryAfterSeconds`.
 */
export class RetryLaterError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
}

/** A queue message that is not one of ours: retrying cannot help, it belongs in the dead-letter queue. */
export class PoisonMessageError extends PyboxError {
  readonly code = "INVALID_REQUEST";
}

/** Configuration is missing or invalid: fails the cold start, never a request. */
export class ConfigError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
}

/**
 * Raised by the Jupyter client when the kernel stopped answering (heartbeat lost or process gone).
 * The service turns it into {@link KernelDeadError} after marking the record.
 */
export class KernelDiedError extends PyboxError {
  readonly code = "KERNEL_DEAD";
}

/**
 * Raised by the Jupyter client when an interrupted run did not end within its grace period: the
 * kernel is stuck in code that ignores interrupts. Carries what the run displayed until then.
 */
export class KernelStuckError extends PyboxError {
  readonly code = "KERNEL_DEAD";
  constructor(
    message: string,
    readonly partial: RunResult,
  ) {
    super(message);
  }
}

/** DynamoDB refused a write as too large for one item (400 KB): retrying the same write cannot help. */
export class ItemTooLargeError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
}

/** A stored record or ref this code cannot read (a newer schema, another backend, a hand edit). */
export class CorruptRecordError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
}

/** A message on a kernel socket failed HMAC verification or could not be decoded. */
export class InvalidMessageError extends PyboxError {
  readonly code = "BACKEND_ERROR";
  override readonly expose = false;
}

/** Internal: a conditional write lost a race. Never leaves `lib/store` callers. */
export class ConditionFailedError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
}

/** Internal: a ref remembered by this container belongs to an older kernel under the same id. */
export class StaleRefError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
  constructor() {
    super("cached kernel ref is stale");
  }
}

/**
 * `npm start`'s state folder is held by another live server: its embedded DynamoDB (a LevelDB)
 * cannot be opened twice, so the second server stops before trying, and says how to run both.
 */
export class StateDirLockedError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
  constructor(
    readonly stateDir: string,
    readonly pid: number | undefined,
  ) {
    super(
      `the state directory ${stateDir} is in use by ${pid === undefined ? "another process" : `process ${pid}`} (another \`npm start\`?); stop it, or choose another with PYBOX_STATE_DIR=<folder> (and PORT=<port>, if it serves on yours)`,
    );
  }
}

/** `npm start`'s port is taken by another process: the server says so and how to pick another. */
export class PortInUseError extends PyboxError {
  readonly code = "INTERNAL";
  override readonly expose = false;
  constructor(
    readonly port: number,
    options: { cause?: unknown } = {},
  ) {
    super(
      `port ${port} on 127.0.0.1 is in use (another \`npm start\`?); choose another with PORT=<port>`,
      options,
    );
  }
}

/**
 * A chunk of an upload that does not continue it: out of order, for a different total, or with no
 * upload under way. Nothing was written; `received` says where the upload stands (send that byte next).
 */
export class UploadConflictError extends PyboxError {
  readonly code = "UPLOAD_CONFLICT";
  constructor(
    message: string,
    readonly received: number,
  ) {
    super(message);
  }
}

/** A folder with content was to be deleted: the files API removes files and empty folders only. */
export class FolderNotEmptyError extends PyboxError {
  readonly code = "FOLDER_NOT_EMPTY";
}
