import { createHash, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "../config.ts";
import type { RunView } from "../core/run-view.ts";
import {
  KernelDeadError,
  NotFoundError,
  PayloadTooLargeError,
  RunConflictError,
  ValidationError,
} from "../errors.ts";
import type { KernelStore } from "../store/kernel-store.ts";
import type { RunRecord, RunStore } from "../store/run-store.ts";
import type { RunQueue } from "./run-queue.ts";

/** What queueing a run was asked for. */
export interface EnqueueRequest {
  code: string;
  timeoutMs?: number;
  runId?: string;
}

/** Longest pause between two reads of a run a long poll waits for. */
const RUN_WAIT_POLL_MAX_MS = 100;

/** The limits of queued runs: exactly these parts of `Config`. */
export type AsyncRunSettings = Pick<Config, "run" | "asyncRun">;

/**
 * Runs that outlive an HTTP request, as callers see them: `submit` records one as `queued` and
 * sends it to the queue, `get` reads it back. Needs no backend (the queue consumer's
 * {@link RunExecutor} runs the code), so the functions serving these two load none.
 */
export class AsyncRuns {
  constructor(
    private readonly store: RunStore,
    private readonly kernels: KernelStore,
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
    // Queueing is activity: the reaper must not take the kernel from under a run about to come.
    await this.kernels.touch(kernel);
    // Sent again for a repeated `queued` run too: if the first POST died between the record and
    // the message, this one completes it; if not, the queue's deduplication drops the copy.
    const message = {
      action: "run" as const,
      owner,
      kernelId,
      runId,
      code: request.code,
      ...(request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs }),
    };
    try {
      await this.queue.send(message, runId);
    } catch (error) {
      // The caller hears "nothing was queued": the record must not say otherwise.
      if (created) await this.store.deleteQueued(record);
      throw error;
    }
    return toView(record);
  }

  /**
   * Closes every run still `queued` or `running`: the dev server's queue lives in memory, so after
   * a restart none of them will ever be delivered. Returns how many were closed.
   */
  async abandonUnfinished(): Promise<number> {
    let closed = 0;
    for await (const record of this.store.scanUnfinished()) {
      await this.store.abandon(
        record,
        record.status === "queued"
          ? "the server stopped before this run was delivered; it was not run"
          : "the server stopped while this run was under way; its outcome is unknown",
      );
      closed++;
    }
    return closed;
  }

  /**
   * The caller's queued run; another caller's is answered like one that does not exist. With
   * `waitMs`, an unfinished run is read again (every 10 ms at first, then at most every
   * {@link RUN_WAIT_POLL_MAX_MS}) until it ends or the wait is over: the caller learns of the end at
   * once, and the reads stay inside AWS, cheap and close.
   */
  async get(
    owner: string,
    kernelId: string,
    runId: string,
    options: { waitMs?: number } = {},
  ): Promise<RunView> {
    const until = Date.now() + (options.waitMs ?? 0);
    for (let pause = 10; ; pause = Math.min(pause * 2, RUN_WAIT_POLL_MAX_MS)) {
      const record = await this.store.get(owner, kernelId, runId);
      if (!record) throw new NotFoundError(`no run '${runId}' on kernel '${kernelId}'`);
      const view = toView(record);
      if (view.status !== "queued" && view.status !== "running") return view;
      const left = until - Date.now();
      if (left <= 0) return view;
      await sleep(Math.min(pause, left));
    }
  }
}

/** The code's fingerprint, stored with its run to tell a retried submission from a reused id. */
export function sha256(text: string): string {
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
