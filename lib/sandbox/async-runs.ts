import { createHash, randomUUID } from "node:crypto";
import type { Config } from "../config.ts";
import {
  KernelBusyError,
  KernelDeadError,
  KernelStartingError,
  NotFoundError,
  PayloadTooLargeError,
  PyboxError,
  RetryLaterError,
  RunConflictError,
  ValidationError,
} from "../errors.ts";
import type { RunResult } from "../jupyter/run-result.ts";
import { logger } from "../logger.ts";
import type { RunMessage } from "../queue/messages.ts";
import type { RunQueue } from "../queue/port.ts";
import type { KernelStore } from "../store/kernel-store.ts";
import type { RunOutcome, RunRecord, RunRecordStatus, RunStore } from "../store/run-store.ts";
import { fitResult } from "./fit-result.ts";
import type { SandboxService } from "./service.ts";

/** A queued run as callers see it (`GET /kernels/{id}/runs/{runId}`). */
export interface RunView {
  runId: string;
  kernelId: string;
  status: RunRecordStatus;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** The RunResult, once the kernel gave one. */
  result?: RunResult;
  /** Why the run ended without a RunResult: the kernel was gone, or its invocation was lost. */
  error?: { code: string; message: string };
}

/** What queueing a run was asked for. */
export interface EnqueueRequest {
  code: string;
  timeoutMs?: number;
  runId?: string;
}

/** The limits of queued runs: exactly these parts of `Config`. */
export type AsyncRunSettings = Pick<Config, "run" | "asyncRun" | "startTimeoutMs">;

/** Kept back from the consumer's deadline to store the result and answer SQS. */
const DEADLINE_RESERVE_MS = 5_000;

/** How long a busy kernel's run waits before its message is delivered again. */
const BUSY_RETRY_SECONDS = 2;

/**
 * Runs that outlive an HTTP request: `submit` records one as `queued` and sends it to the queue;
 * the queue consumer `execute`s it through the same {@link SandboxService} as synchronous runs
 * and stores the outcome for `get`. Each run executes at most once: the record moves
 * `queued → running` by a conditional write, and a run whose invocation vanished mid-way is
 * reported lost, never run again.
 */
export class AsyncRuns {
  constructor(
    private readonly store: RunStore,
    private readonly kernels: KernelStore,
    private readonly sandbox: SandboxService,
    private readonly queue: RunQueue,
    private readonly settings: AsyncRunSettings,
  ) {}

  /**
   * Queues a run on the caller's kernel. Checked before anything is written: the kernel exists for
   * this caller and is not dead, the code fits, the timeout is within what a queued run may take.
   * The same `runId` with the same code answers with that run again (a retried POST).
   */
  async submit(owner: string, kernelId: string, request: EnqueueRequest): Promise<RunView> {
    const { maxCodeBytes } = this.settings.run;
    if (Buffer.byteLength(request.code, "utf8") > maxCodeBytes) {
      throw new PayloadTooLargeError(`code exceeds ${maxCodeBytes} bytes`);
    }
    const { maxTimeoutMs } = this.settings.asyncRun;
    if (request.timeoutMs !== undefined && request.timeoutMs > maxTimeoutMs) {
      throw new ValidationError(`timeoutMs of a queued run must be an integer from 1 to ${maxTimeoutMs}`);
    }
    const kernel = await this.kernels.get(owner, kernelId);
    if (!kernel) throw new NotFoundError(`no kernel '${kernelId}'`);
    if (kernel.state === "dead") {
      throw new KernelDeadError(
        `kernel '${kernelId}' has died and its state is lost; POST /kernels with this kernelId starts it again`,
      );
    }
    const runId = request.runId ?? randomUUID();
    const sha = sha256(request.code);
    const { created, record } = await this.store.create(owner, kernelId, runId, sha);
    if (!created) {
      if (record.codeSha256 !== sha) {
        throw new RunConflictError(`run '${runId}' was already queued with different code`);
      }
      if (record.status !== "queued") return toView(record);
    }
    // Sent again for a repeated `queued` run too: if the first POST died between the record and
    // the message, this one completes it; if not, the queue's deduplication drops the copy.
    await this.queue.send(
      {
        action: "run",
        owner,
        kernelId,
        runId,
        code: request.code,
        ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
      },
      runId,
    );
    return toView(record);
  }

  /** The caller's queued run; another caller's is answered like one that does not exist. */
  async get(owner: string, kernelId: string, runId: string): Promise<RunView> {
    const record = await this.store.get(owner, kernelId, runId);
    if (!record) throw new NotFoundError(`no run '${runId}' on kernel '${kernelId}'`);
    return toView(record);
  }

  /**
   * Executes one delivered `run` message, at most once, and stores its outcome. `runId` is the
   * message's own or, for a producer that gave none, the SQS message id. Throws
   * {@link RetryLaterError} when nothing ran yet and a later delivery may succeed (the kernel is
   * busy with the run before it, or still starting).
   */
  async execute(message: RunMessage, runId: string, deadline: number): Promise<RunRecordStatus> {
    const { owner, kernelId, code } = message;
    const attempt = randomUUID();
    const claim = await this.store.claim(owner, kernelId, runId, sha256(code), attempt, deadline);
    if (!claim.claimed) {
      const { record } = claim;
      if (record.status === "running" && (record.runningUntil ?? 0) < Date.now()) {
        logger.warn("queued run lost by its invocation; not running it again", { kernelId, runId });
        await this.store.markLost(
          record,
          "the invocation running this code ended before it could report; whether the code ran is unknown, so it was not run again",
        );
        return "error";
      }
      logger.info("duplicate delivery of a queued run ignored", { kernelId, runId, status: record.status });
      return record.status;
    }
    const { record } = claim;
    const timeoutMs = message.timeoutMs ?? this.settings.run.defaultTimeoutMs;
    const needed = timeoutMs + this.settings.run.interruptGraceMs + DEADLINE_RESERVE_MS;
    if (deadline - Date.now() < needed) {
      // Later in a batch, too little time is left for this run: a fresh invocation has enough.
      await this.store.release(record, attempt);
      throw new RetryLaterError("not enough time left in this invocation", { retryAfterSeconds: 0 });
    }
    let outcome: RunOutcome;
    try {
      const result = await this.sandbox.run(owner, kernelId, code, {
        timeoutMs,
        deadline: deadline - DEADLINE_RESERVE_MS,
        maxTimeoutMs: this.settings.asyncRun.maxTimeoutMs,
        maxOutputBytes: this.settings.asyncRun.maxResultBytes,
      });
      outcome = { status: result.status, result: fitResult(result, this.settings.asyncRun.maxResultBytes) };
    } catch (error) {
      if (error instanceof KernelBusyError || error instanceof KernelStartingError) {
        await this.store.release(record, attempt);
        throw new RetryLaterError(error.message, {
          cause: error,
          retryAfterSeconds: error.retryAfterSeconds ?? BUSY_RETRY_SECONDS,
        });
      }
      outcome = { status: "error", error: describe(error) };
    }
    await this.store.finish(record, attempt, outcome);
    return outcome.status;
  }
}

/**
 * A failure as a run record shows it. The code decides what the caller may read: a server-side
 * error keeps its detail in the logs.
 */
function describe(error: unknown): { code: string; message: string } {
  if (error instanceof PyboxError && error.expose) return { code: error.code, message: error.message };
  logger.error("queued run failed", { error: error as Error });
  const code = error instanceof PyboxError ? error.code : "INTERNAL";
  return { code, message: "the run failed on the server side; nothing more is known" };
}

function sha256(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function toView(record: RunRecord): RunView {
  return {
    runId: record.runId,
    kernelId: record.kernelId,
    status: record.status,
    createdAt: record.createdAt,
    ...(record.startedAt ? { startedAt: record.startedAt } : {}),
    ...(record.finishedAt ? { finishedAt: record.finishedAt } : {}),
    ...(record.result ? { result: record.result } : {}),
    ...(record.error ? { error: record.error } : {}),
  };
}
