import { randomUUID } from "node:crypto";
import type { Config } from "../config.ts";
import { KernelBusyError, KernelStartingError, PyboxError, RetryLaterError } from "../errors.ts";
import { logger } from "../logger.ts";
import type { RunMessage } from "../queue/messages.ts";
import type { RunOutcome, RunRecordStatus, RunStore } from "../store/run-store.ts";
import { sha256 } from "./async-runs.ts";
import { fitResult } from "./fit-result.ts";
import type { SandboxService } from "./service.ts";

/** The limits a queued run executes under: exactly these parts of `Config`. */
export type RunExecutorSettings = Pick<Config, "run" | "asyncRun">;

/** Kept back from the consumer's deadline to store the result and answer SQS. */
const DEADLINE_RESERVE_MS = 5_000;

/** How long a busy kernel's run waits before its message is delivered again. */
const BUSY_RETRY_SECONDS = 2;

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
