import { randomUUID } from "node:crypto";
import type { Config } from "../config.ts";
import type { RunMessage } from "../core/queue-message.ts";
import {
  KernelBusyError,
  KernelStartingError,
  PoisonMessageError,
  PyboxError,
  RetryLaterError,
  StoreUnavailableError,
} from "../errors.ts";
import { logger } from "../logger.ts";
import type { RunOutcome, RunRecord, RunRecordStatus, RunStore } from "../store/run-store.ts";
import { sha256 } from "./async-runs.ts";
import { fitResult } from "./fit-result.ts";
import type { SandboxService } from "./service.ts";

/** The limits a queued run executes under: exactly these parts of `Config`. */
export type RunExecutorSettings = Pick<Config, "run" | "asyncRun">;

/** Kept back from the consumer's deadline to store the result and answer SQS. */
const DEADLINE_RESERVE_MS = 5_000;

/** How long a busy kernel's run waits before its message is delivered again. */
const BUSY_RETRY_SECONDS = 2;

/** How long a queued run waits in the consumer for a kernel another run holds. */
const ASYNC_BUSY_WAIT_MS = 60_000;

/** One delivery of a run message, as the consumer saw it. */
export interface RunDelivery {
  /** The message's `runId`, else its SQS message id. */
  runId: string;
  /** Epoch ms by which the consumer invocation must have answered. */
  deadline: number;
  /** The queue will not deliver this message again (its receive count is at the redrive limit). */
  finalDelivery: boolean;
}

/** A run this attempt holds. */
interface Held {
  record: RunRecord;
  attempt: string;
  finalDelivery: boolean;
}

/**
 * Executes queued runs for the queue consumer, through the same {@link SandboxService} as
 * synchronous runs, and stores each outcome for `GET …/runs/{runId}`. Each run executes at most
 * once: its record moves `queued → running` by a conditional write, and a run whose invocation
 * vanished mid-way is reported lost, never run again.
 */
export class RunExecutor {
  constructor(
    private readonly store: RunStore,
    private readonly sandbox: SandboxService,
    private readonly settings: RunExecutorSettings,
  ) {}

  /**
   * Executes one delivered `run` message, at most once, and stores its outcome. `runId` is the
   * message's own or, for a producer that gave none, the SQS message id. Throws
   * {@link RetryLaterError} when nothing ran yet and a later delivery may succeed (the kernel is
   * busy with the run before it, or still starting, or another invocation holds the run); on the
   * queue's last delivery it gives up instead and says so in the record, so no run stays `queued`
   * behind a message that went to the dead-letter queue.
   */
  async execute(message: RunMessage, delivery: RunDelivery): Promise<RunRecordStatus> {
    const { owner, kernelId, code } = message;
    const { runId, deadline } = delivery;
    const attempt = randomUUID();
    const sha = sha256(code);
    const claim = await this.store.claim(owner, kernelId, runId, sha, attempt, deadline);
    if (!claim.claimed) return this.alreadyTaken(claim.record, sha);
    const { record } = claim;
    const held: Held = { record, attempt, finalDelivery: delivery.finalDelivery };
    const { run, asyncRun } = this.settings;
    const timeoutMs = message.timeoutMs ?? run.defaultTimeoutMs;
    if (timeoutMs > asyncRun.maxTimeoutMs) {
      const message = `timeoutMs of a queued run must be at most ${asyncRun.maxTimeoutMs}`;
      return this.end(held, { status: "error", error: { code: "INVALID_REQUEST", message } });
    }
    const needed = timeoutMs + run.interruptGraceMs + DEADLINE_RESERVE_MS;
    if (deadline - Date.now() < needed) {
      // Later in a batch, too little time is left for this run: a fresh invocation has enough.
      return this.defer(
        held,
        new RetryLaterError("not enough time left in this invocation", { retryAfterSeconds: 0 }),
      );
    }
    let outcome: RunOutcome;
    try {
      const result = await this.sandbox.run(owner, kernelId, code, {
        timeoutMs,
        deadline: deadline - DEADLINE_RESERVE_MS,
        maxTimeoutMs: asyncRun.maxTimeoutMs,
        maxOutputBytes: asyncRun.maxResultBytes,
        // Nobody waits on a queued run: it may wait for the kernel far longer than a request could.
        busyWaitMs: Math.max(run.busyWaitMs, Math.min(ASYNC_BUSY_WAIT_MS, deadline - Date.now() - needed)),
      });
      outcome = { status: result.status, result: fitResult(result, asyncRun.maxResultBytes) };
    } catch (error) {
      // These are raised before the code is sent: nothing ran, so it may be tried again.
      if (
        error instanceof KernelBusyError ||
        error instanceof KernelStartingError ||
        error instanceof StoreUnavailableError
      ) {
        return this.defer(
          held,
          new RetryLaterError(error.message, {
            cause: error,
            retryAfterSeconds: error.retryAfterSeconds ?? BUSY_RETRY_SECONDS,
          }),
        );
      }
      outcome = { status: "error", error: describe(error) };
    }
    return this.end(held, outcome);
  }

  /** A delivery whose run is not (or no longer) queued: a duplicate, or a run someone else holds. */
  private async alreadyTaken(record: RunRecord, sha: string): Promise<RunRecordStatus> {
    const { kernelId, runId } = record;
    if (record.codeSha256 !== sha) {
      throw new PoisonMessageError(`run '${runId}' on kernel '${kernelId}' exists with other code`);
    }
    if (record.status === "queued") {
      throw new RetryLaterError("the run was handed back meanwhile", { retryAfterSeconds: 1 });
    }
    if (record.status === "running") {
      const left = (record.runningUntil ?? 0) - Date.now();
      if (left >= 0) {
        // Another invocation holds it, or held it and could not report: look again once its
        // deadline has passed, never run it a second time.
        throw new RetryLaterError("another invocation holds this run", {
          retryAfterSeconds: Math.ceil(left / 1_000) + 1,
        });
      }
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

  /** Hands a run that has not started back to the queue, or, on the last delivery, closes it. */
  private async defer(held: Held, reason: RetryLaterError): Promise<RunRecordStatus> {
    if (held.finalDelivery) {
      const message = `the run could not start (${reason.message}) in all the deliveries the queue allows; it was not run`;
      return this.end(held, { status: "error", error: { code: "RUN_UNDELIVERABLE", message } });
    }
    await this.store.release(held.record, held.attempt);
    throw reason;
  }

  private async end(held: Held, outcome: RunOutcome): Promise<RunRecordStatus> {
    await this.store.finish(held.record, held.attempt, outcome);
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
