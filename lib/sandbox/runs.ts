import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { KernelRef } from "../backends/port.ts";
import type { OutputEvent } from "../core/run-events.ts";
import type { RunResult } from "../core/run-result.ts";
import {
  ConditionFailedError,
  CorruptRecordError,
  KernelDiedError,
  KernelStoppedError,
  KernelStuckError,
  PayloadTooLargeError,
  StaleRefError,
  ValidationError,
} from "../errors.ts";
import { logger } from "../logger.ts";
import type { KernelRecord } from "../store/kernel-store.ts";
import { DEADLINE_RESERVE_MS, deadError, type KernelAccess, LEASE_MARGIN_MS } from "./kernel-access.ts";

/** How one run is bounded, beyond the configured defaults. */
export interface RunLimits {
  /** The code's own timeout; the configured default when absent. */
  timeoutMs?: number;
  /** Epoch ms by which the invocation must have answered. */
  deadline?: number;
  /** Largest `timeoutMs` accepted: queued runs may take longer than synchronous ones. */
  maxTimeoutMs?: number;
  /** A tighter output cap than the configured one (a stored result must fit a DynamoDB item). */
  maxOutputBytes?: number;
  /** How long to wait for a kernel another run holds, instead of the configured wait. */
  busyWaitMs?: number;
  /** Told each output as the kernel produces it (a streamed run). */
  onOutput?: (event: OutputEvent) => void;
}

/**
 * Kept back for restarting a kernel that ignored the interrupt: a local or gateway kernel starts in
 * well under this; a slower start goes on past the answer (see `recoverStuck`).
 */
const RESTART_RESERVE_MS = 2_000;

/**
 * Runs code in callers' kernels, one run at a time per kernel (a lease in the record), and deals
 * with what a run can find: a dead kernel, or one that ignores the interrupt and must be restarted.
 */
export class KernelRuns {
  constructor(private readonly kernels: KernelAccess) {}

  /**
   * Runs code in the caller's kernel. Runs on one kernel are serialised by a lease, so a timeout
   * interrupts only its own code; a run waits a bounded time for the lease, then gets `KERNEL_BUSY`.
   * `deadline` (epoch ms) is when the invocation must have answered: waits and the code's own
   * timeout are cut to fit inside it, so the kernel is always interrupted before the caller gives up.
   */
  async run(owner: string, kernelId: string, code: string, limits: RunLimits = {}): Promise<RunResult> {
    const { run } = this.kernels.settings;
    const deadline = limits.deadline;
    const maxTimeoutMs = limits.maxTimeoutMs ?? run.maxTimeoutMs;
    if (Buffer.byteLength(code, "utf8") > run.maxCodeBytes) {
      throw new PayloadTooLargeError(`code exceeds ${run.maxCodeBytes} bytes`);
    }
    const asked = limits.timeoutMs ?? run.defaultTimeoutMs;
    if (!Number.isInteger(asked) || asked < 1 || asked > maxTimeoutMs) {
      // A synchronous run is bounded by API Gateway's 30 s; queued runs (their own maximum) are not.
      const longer =
        limits.maxTimeoutMs === undefined ? "; run longer code with POST /kernels/{kernelId}/runs" : "";
      throw new ValidationError(`timeoutMs must be an integer from 1 to ${maxTimeoutMs}${longer}`);
    }
    // What the code may use of the invocation: the rest goes to the interrupt, a restart, the answer.
    const spare = run.interruptGraceMs + RESTART_RESERVE_MS + DEADLINE_RESERVE_MS;
    const codeTime = () => (deadline ?? Number.POSITIVE_INFINITY) - Date.now() - spare;
    const budget = codeTime();
    const busyWaitMs = Math.max(0, Math.min(limits.busyWaitMs ?? run.busyWaitMs, budget - 1_000));
    const leaseId = randomUUID();
    const lease = this.kernels.acquire(
      owner,
      kernelId,
      leaseId,
      asked + run.interruptGraceMs + LEASE_MARGIN_MS,
      busyWaitMs,
    );
    lease.catch(() => undefined);
    const options = () => {
      const maxOutputBytes = Math.min(run.maxOutputBytes, limits.maxOutputBytes ?? run.maxOutputBytes);
      return {
        timeoutMs: Math.max(100, Math.min(asked, codeTime())),
        interruptGraceMs: run.interruptGraceMs,
        maxOutputBytes,
        // A tighter total (a queued run's stored result) tightens the entry cap with it.
        maxOutputEntryBytes: Math.min(run.maxOutputEntryBytes, maxOutputBytes),
        ...(limits.onOutput ? { onOutput: limits.onOutput } : {}),
      };
    };
    const { backend, store } = this.kernels;
    let record: KernelRecord | undefined;
    let released = false;
    try {
      // With the kernel's address known from an earlier call in this container, connect and
      // handshake while the lease is being taken; the code goes out only once it is ours.
      const cached = this.kernels.remembered(owner, kernelId);
      if (cached) {
        let admittedAs: string | undefined;
        const admitted = lease.then((held) => {
          if (held.incarnation !== cached.incarnation) throw new StaleRefError();
          admittedAs = held.incarnation;
        });
        admitted.catch(() => undefined);
        try {
          const result = await backend.run(cached.ref, code, { ...options(), admitted });
          record = await lease;
          return await this.afterRestart(cached.ref, result);
        } catch (error) {
          const sent = admittedAs !== undefined;
          record = await lease;
          // The code went out to this very kernel: what happened to it is the answer. Otherwise
          // nothing ran yet, and the run starts over from the stored ref.
          if (sent) throw error;
          this.kernels.forget(owner, kernelId);
        }
      }
      record ??= await lease;
      const ref = this.kernels.refOf(record);
      if (!ref) throw new CorruptRecordError(`kernel '${kernelId}' is ready but has no ref`);
      this.kernels.remember(record, ref);
      return await this.afterRestart(ref, await backend.run(ref, code, options()));
    } catch (error) {
      if (!record) throw error;
      if (error instanceof KernelStuckError) {
        released = true;
        return await this.recoverStuck(record, error, deadline);
      }
      if (error instanceof KernelDiedError) {
        released = true;
        const current = await store.get(owner, kernelId).catch(() => record);
        await this.kernels.bury(record);
        // A stop (or a restart elsewhere) under the run is not a death: say what happened.
        if (current?.incarnation !== record.incarnation) {
          throw new KernelStoppedError(`kernel '${kernelId}' was stopped while this run was under way`);
        }
        throw deadError(kernelId, error);
      }
      throw error;
    } finally {
      if (record && !released) await this.kernels.release(owner, kernelId, leaseId);
    }
  }

  /**
   * A kernel the backend restarted under the run (a gateway does) has lost what it kept: it is set
   * up again, still under the run's lease, before the result goes back.
   */
  private async afterRestart(ref: KernelRef, result: RunResult): Promise<RunResult> {
    if (result.restarted) await this.kernels.setUp(ref);
    return result;
  }

  /**
   * A kernel that ignored the interrupt is replaced by a fresh one under the same id and spec,
   * within the time the invocation has left. A restart still under way then goes on (under
   * `npm start`; a frozen Lambda's is taken over by the next start once it stalls), and the result
   * says which happened.
   */
  private async recoverStuck(record: KernelRecord, stuck: KernelStuckError, deadline?: number) {
    this.kernels.forget(record.owner, record.kernelId);
    const restart = this.restart(record);
    void restart.finally(() => this.kernels.leaseGone(record.owner, record.kernelId)).catch(() => undefined);
    restart.catch(() => undefined);
    if (deadline === undefined) return stuckResult(stuck, await restart);
    const timer = new AbortController();
    const out = sleep(Math.max(0, deadline - Date.now() - DEADLINE_RESERVE_MS), "restarting" as const, {
      signal: timer.signal,
    }).catch(() => "restarting" as const);
    try {
      return stuckResult(stuck, await Promise.race([restart, out]));
    } finally {
      timer.abort();
    }
  }

  /** Stops a stuck kernel and starts its replacement; `stopped` when no replacement could be made. */
  private async restart(record: KernelRecord): Promise<"restarted" | "stopped"> {
    let claimed: KernelRecord;
    try {
      const until = Date.now() + this.kernels.claimMs;
      claimed = await this.kernels.store.claim(record, this.kernels.backend.name, until);
    } catch (error) {
      // Stopped or replaced meanwhile, or the store is failing: end this kernel and leave the record be.
      if (!(error instanceof ConditionFailedError)) await this.kernels.bury(record);
      else await this.kernels.stopQuietly(record);
      return "stopped";
    }
    await this.kernels.stopQuietly(record);
    try {
      const request = { kernelId: record.kernelId, ...record.spec };
      return (await this.kernels.launch(claimed, request, true)) ? "restarted" : "stopped";
    } catch (error) {
      logger.warn("a stuck kernel could not be restarted", {
        kernelId: record.kernelId,
        error: error as Error,
      });
      return "stopped";
    }
  }
}

/** What became of a kernel that ignored the interrupt, as the run's error says it. */
const STUCK_OUTCOMES = {
  restarted: "so it was restarted: its variables and imports are gone",
  restarting:
    "so a fresh kernel is starting in its place: its variables and imports are gone, and runs answer KERNEL_STARTING until it is ready",
  stopped: "and was shut down (its state is lost): POST /kernels with this kernelId to start a fresh one",
} as const;

/** The answer to a run whose kernel would not stop: what it displayed, and what became of the kernel. */
function stuckResult(error: KernelStuckError, outcome: keyof typeof STUCK_OUTCOMES): RunResult {
  const partial = error.partial;
  const evalue = `${partial.error?.evalue ?? "execution timed out"}; the kernel did not respond to the interrupt, ${STUCK_OUTCOMES[outcome]}`;
  return {
    ...partial,
    status: "timeout",
    error: { ename: "TimeoutError", evalue, traceback: partial.error?.traceback ?? [] },
    ...(outcome === "stopped" ? {} : { restarted: true }),
  };
}
