import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { LRUCache } from "lru-cache";
import type { Backend, KernelInventory, KernelRef } from "../backends/port.ts";
import type { Config } from "../config.ts";
import {
  CapacityError,
  ConditionFailedError,
  CorruptRecordError,
  KernelBusyError,
  KernelDeadError,
  KernelDiedError,
  KernelStartingError,
  KernelStoppedError,
  KernelStuckError,
  NotFoundError,
  PayloadTooLargeError,
  StaleRefError,
  ValidationError,
} from "../errors.ts";
import type { RunResult } from "../jupyter/run-result.ts";
import { logger } from "../logger.ts";
import type { KernelRecord, KernelStore } from "../store/kernel-store.ts";
import { mergeKernelEnv } from "./kernel-env.ts";

/** A kernel as callers see it (`GET /kernels/{id}`): no ref, no addresses, no keys. */
export interface KernelView {
  kernelId: string;
  backend: string;
  state: "starting" | "idle" | "busy" | "dead";
  createdAt: string;
  lastActivityAt: string;
  /** Present on the start that replaced a dead kernel: the old kernel's variables are gone. */
  restarted?: boolean;
}

/** What `start` was asked for (pybox `start(kernel_id, cwd)`, plus caller env). */
export interface StartRequest {
  kernelId?: string;
  cwd?: string;
  env?: Record<string, string>;
}

/** Whether a kernel was made (`201`) or the caller's live one returned (`200`). */
export interface StartOutcome {
  created: boolean;
  kernel: KernelView;
}

/** What one reaper pass did, by kind of clean-up. */
export interface ReapReport {
  /** Idle kernels stopped and forgotten. */
  idle: number;
  /** Kernels found dead and marked so. */
  dead: number;
  /** Dead kernels' records forgotten after the idle time. */
  forgotten: number;
  /** Starts that never finished, cleaned up. */
  stalled: number;
  /** Running kernels no record pointed at, stopped. */
  orphans: number;
}

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
}

/** The limits and waits the service applies: exactly these parts of `Config`. */
export type SandboxSettings = Pick<Config, "operatorEnv" | "startTimeoutMs" | "run" | "maxKernelsPerCaller">;

/** A kernel's ref as last read in this container, tagged with the incarnation it belongs to. */
interface CachedRef {
  incarnation: string;
  ref: KernelRef;
}

/** How many kernels' refs one container remembers. */
const REF_CACHE_SIZE = 1_000;

/** Slack on leases and start claims, so a slow write never frees a kernel still in use. */
const LEASE_MARGIN_MS = 30_000;

/** Longest pause between two tries for a busy kernel's lease. */
const LEASE_POLL_MAX_MS = 50;

/** Kept back from an invocation's deadline to give the lease back and answer. */
const DEADLINE_RESERVE_MS = 1_000;

/**
 * Kept back for restarting a kernel that ignored the interrupt: a local or gateway kernel starts in
 * well under this; a slower start goes on past the answer (see `recoverStuck`).
 */
const RESTART_RESERVE_MS = 2_000;

/**
 * Start, run, get and stop, per caller. Stateless: every call reads what it needs from the store,
 * and every change of ownership is a conditional write, so concurrent invocations agree on one
 * kernel per (owner, kernelId) and one run at a time per kernel.
 */
export class SandboxService {
  private readonly refs = new LRUCache<string, CachedRef>({ max: REF_CACHE_SIZE });

  constructor(
    private readonly store: KernelStore,
    private readonly backend: Backend,
    private readonly settings: SandboxSettings,
  ) {}

  /**
   * Get-or-create, as pybox's `start`: the caller's live kernel by that id is returned; a dead one
   * is replaced (`restarted: true`); concurrent starts of one id wait for the one that won.
   */
  async start(
    owner: string,
    request: StartRequest,
    limits: { deadline?: number } = {},
  ): Promise<StartOutcome> {
    const kernelId = request.kernelId ?? randomUUID();
    // Waiting for another start ends in time for the invocation to answer `KERNEL_STARTING` itself.
    const deadline = Math.min(
      Date.now() + this.settings.startTimeoutMs + LEASE_MARGIN_MS,
      (limits.deadline ?? Number.POSITIVE_INFINITY) - DEADLINE_RESERVE_MS,
    );
    for (let attempt = 0; ; attempt++) {
      const existing = await this.store.get(owner, kernelId);
      if (existing?.state === "ready" && (await this.alive(existing))) {
        return { created: false, kernel: toView(existing) };
      }
      if (!existing) await this.checkKernelLimit(owner);
      const claimed = await this.claim(owner, kernelId, existing);
      if (claimed) {
        if (existing?.ref) await this.stopQuietly(existing);
        const kernel = await this.launch(
          claimed,
          request,
          existing !== undefined && existing.state !== "starting",
        );
        if (kernel) return { created: true, kernel };
      } else if (Date.now() > deadline) {
        throw new KernelStartingError(`kernel '${kernelId}' is still starting; try again shortly`, {
          retryAfterSeconds: 2,
        });
      } else {
        await sleep(Math.min(50 * 2 ** attempt, 500));
      }
    }
  }

  /** The caller's kernel, with its liveness checked (a kernel found dead is marked so). */
  async get(owner: string, kernelId: string): Promise<KernelView> {
    const record = await this.store.get(owner, kernelId);
    if (!record) throw notFound(kernelId);
    if (record.state === "ready" && !(await this.alive(record))) {
      await this.bury(record);
      return toView({ ...record, state: "dead" });
    }
    return toView(record);
  }

  /**
   * Runs code in the caller's kernel. Runs on one kernel are serialised by a lease, so a timeout
   * interrupts only its own code; a run waits a bounded time for the lease, then gets `KERNEL_BUSY`.
   * `deadline` (epoch ms) is when the invocation must have answered: waits and the code's own
   * timeout are cut to fit inside it, so the kernel is always interrupted before the caller gives up.
   */
  async run(owner: string, kernelId: string, code: string, limits: RunLimits = {}): Promise<RunResult> {
    const { run } = this.settings;
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
    const lease = this.acquire(
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
      };
    };
    let record: KernelRecord | undefined;
    let released = false;
    try {
      // With the kernel's address known from an earlier call in this container, connect and
      // handshake while the lease is being taken; the code goes out only once it is ours.
      const cached = this.refs.get(cacheKey(owner, kernelId));
      if (cached) {
        let admittedAs: string | undefined;
        const admitted = lease.then((held) => {
          if (held.incarnation !== cached.incarnation) throw new StaleRefError();
          admittedAs = held.incarnation;
        });
        admitted.catch(() => undefined);
        try {
          const result = await this.backend.run(cached.ref, code, { ...options(), admitted });
          record = await lease;
          return result;
        } catch (error) {
          const sent = admittedAs !== undefined;
          record = await lease;
          // The code went out to this very kernel: what happened to it is the answer. Otherwise
          // nothing ran yet, and the run starts over from the stored ref.
          if (sent) throw error;
          this.refs.delete(cacheKey(owner, kernelId));
        }
      }
      record ??= await lease;
      const ref = this.refOf(record);
      if (!ref) throw new CorruptRecordError(`kernel '${kernelId}' is ready but has no ref`);
      this.refs.set(cacheKey(owner, kernelId), { incarnation: record.incarnation, ref });
      return await this.backend.run(ref, code, options());
    } catch (error) {
      if (!record) throw error;
      if (error instanceof KernelStuckError) {
        released = true;
        return await this.recoverStuck(record, error, deadline);
      }
      if (error instanceof KernelDiedError) {
        released = true;
        const current = await this.store.get(owner, kernelId).catch(() => record);
        await this.bury(record);
        // A stop (or a restart elsewhere) under the run is not a death: say what happened.
        if (current?.incarnation !== record.incarnation) {
          throw new KernelStoppedError(`kernel '${kernelId}' was stopped while this run was under way`);
        }
        throw deadError(kernelId, error);
      }
      throw error;
    } finally {
      if (record && !released) {
        await this.store
          .releaseLease(owner, kernelId, leaseId)
          .catch((cause) => logger.warn("lease not released; it expires by itself", { kernelId, cause }));
      }
    }
  }

  /**
   * A kernel that ignored the interrupt is replaced by a fresh one under the same id and spec,
   * within the time the invocation has left. A restart still under way then goes on (under
   * `npm start`; a frozen Lambda's is taken over by the next start once it stalls), and the result
   * says which happened.
   */
  private async recoverStuck(record: KernelRecord, stuck: KernelStuckError, deadline?: number) {
    this.refs.delete(cacheKey(record.owner, record.kernelId));
    const restart = this.restart(record);
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
      const until = Date.now() + this.settings.startTimeoutMs + LEASE_MARGIN_MS;
      claimed = await this.store.claim(record, this.backend.name, until);
    } catch (error) {
      // Stopped or replaced meanwhile, or the store is failing: end this kernel and leave the record be.
      if (!(error instanceof ConditionFailedError)) await this.bury(record);
      else await this.stopQuietly(record);
      return "stopped";
    }
    await this.stopQuietly(record);
    try {
      const request = { kernelId: record.kernelId, ...record.spec };
      return (await this.launch(claimed, request, true)) ? "restarted" : "stopped";
    } catch (error) {
      logger.warn("a stuck kernel could not be restarted", {
        kernelId: record.kernelId,
        error: error as Error,
      });
      return "stopped";
    }
  }

  /** Stops the caller's kernel and forgets it; stopping a kernel that is gone already succeeds. */
  async stop(owner: string, kernelId: string): Promise<void> {
    this.refs.delete(cacheKey(owner, kernelId));
    const record = await this.store.get(owner, kernelId);
    if (!record) return;
    const ref = this.readableRef(record);
    if (ref) await this.backend.stop(ref);
    await this.store.delete(record);
  }

  /**
   * Finds this backend's kernels left by an earlier process (the dev server after a crash):
   * live ones are kept and served again (the dead process's leases dropped), dead ones are
   * cleaned up. Never per request.
   */
  async recover(): Promise<{ reattached: number; cleaned: number }> {
    let reattached = 0;
    let cleaned = 0;
    for await (const record of this.store.scanAll()) {
      if (record.backend !== this.backend.name) continue;
      if (record.state === "ready" && (await this.alive(record).catch(() => false))) {
        await this.store.clearLease(record);
        reattached++;
      } else if (record.state !== "starting" || (record.startingUntil ?? 0) < Date.now()) {
        await this.stopQuietly(record);
        await this.store.delete(record);
        cleaned++;
      }
    }
    return { reattached, cleaned };
  }

  /**
   * One pass of the reaper, so nothing is left running or recorded for nothing:
   * - kernels unused for longer than `idleMs` are stopped and forgotten (never one a run holds, or
   *   one used since the scan read it);
   * - kernels found dead are marked so (a caller learns it, and its next start says `restarted`),
   *   and dead records are forgotten once idle too;
   * - starts that stalled past their deadline are cleaned up;
   * - kernels the backend runs that no record points at are stopped, once older than a start can
   *   take (`orphanGraceMs`; a start records its kernel only after launching it).
   */
  async reap(idleMs: number, orphanGraceMs?: number): Promise<ReapReport> {
    const report: ReapReport = { idle: 0, dead: 0, forgotten: 0, stalled: 0, orphans: 0 };
    const inventory = this.backend.inventory;
    const known = new Set<string>();
    let unreadable = 0;
    const now = Date.now();
    for await (const record of this.store.scanAll(() => unreadable++)) {
      if (record.backend !== this.backend.name) continue;
      const ref = this.readableRef(record);
      if (ref && inventory) known.add(inventory.keyOf(ref));
      if (!ref && record.ref !== undefined) unreadable++;
      const idle = now - Date.parse(record.lastActivityAt) > idleMs;
      if (record.state === "starting") {
        if ((record.startingUntil ?? 0) >= now) continue;
        await this.stopQuietly(record);
        await this.store.delete(record);
        report.stalled++;
      } else if (record.state === "dead") {
        if (!idle) continue;
        await this.stopQuietly(record);
        await this.store.delete(record);
        report.forgotten++;
      } else if (record.leaseUntil !== undefined && record.leaseUntil > now) {
        // A run holds it: in use, whatever its last activity says.
      } else if (idle) {
        if (!(await this.store.deleteIdle(record))) continue;
        this.refs.delete(cacheKey(record.owner, record.kernelId));
        await this.stopQuietly(record);
        report.idle++;
      } else if (!(await this.alive(record).catch(() => true))) {
        await this.bury(record);
        report.dead++;
      }
    }
    if (inventory && unreadable > 0) {
      logger.warn("orphan sweep skipped: some records could not be read, their kernels could look orphaned");
    } else if (inventory) {
      const grace = orphanGraceMs ?? this.settings.startTimeoutMs + LEASE_MARGIN_MS;
      const candidates = (await inventory.list()).filter(
        (kernel) => !known.has(inventory.keyOf(kernel.ref)) && now - kernel.startedAt >= grace,
      );
      // Read the records once more: a start may have recorded one of them since the scan.
      const recorded = candidates.length > 0 ? await this.recordedKeys(inventory) : new Set<string>();
      for (const kernel of candidates) {
        if (recorded.has(inventory.keyOf(kernel.ref))) continue;
        await this.backend
          .stop(kernel.ref)
          .catch((cause) => logger.warn("could not stop an orphaned kernel", { cause }));
        report.orphans++;
      }
    }
    if (Object.values(report).some((n) => n > 0)) logger.info("reaper pass", { ...report });
    return report;
  }

  /** Stops every kernel of this backend in the store (the dev server on Ctrl-C). */
  async stopAll(): Promise<number> {
    const records: KernelRecord[] = [];
    for await (const record of this.store.scanAll()) {
      if (record.backend === this.backend.name) records.push(record);
    }
    await Promise.all(
      records.map(async (record) => {
        await this.stopQuietly(record);
        await this.store.delete(record);
      }),
    );
    this.refs.clear();
    return records.length;
  }

  /** The inventory keys of every kernel a record of this backend points at. */
  private async recordedKeys(inventory: KernelInventory): Promise<Set<string>> {
    const keys = new Set<string>();
    for await (const record of this.store.scanAll()) {
      const ref = record.backend === this.backend.name ? this.readableRef(record) : undefined;
      if (ref) keys.add(inventory.keyOf(ref));
    }
    return keys;
  }

  /**
   * A caller may hold `maxKernelsPerCaller` live kernels; one more is a 429 that says how to free
   * one. Counted when a new id is started (reviving or returning a kernel never counts twice);
   * concurrent starts of different new ids may pass together, so the limit is exact only up to them.
   */
  private async checkKernelLimit(owner: string): Promise<void> {
    const max = this.settings.maxKernelsPerCaller;
    if ((await this.store.countLive(owner)) < max) return;
    throw new CapacityError(
      `you have ${max} kernels, the most a caller may hold; stop one (DELETE /kernels/{kernelId}) and try again`,
      { retryAfterSeconds: 30 },
    );
  }

  /** Makes this invocation the one that starts the kernel, or returns undefined when another is. */
  private async claim(owner: string, kernelId: string, existing: KernelRecord | undefined) {
    const until = Date.now() + this.settings.startTimeoutMs + LEASE_MARGIN_MS;
    const stalled = existing?.state === "starting" && (existing.startingUntil ?? 0) < Date.now();
    try {
      if (!existing) return await this.store.create(owner, kernelId, this.backend.name, until);
      if (existing.state === "starting" && !stalled) return undefined;
      return await this.store.claim(existing, this.backend.name, until);
    } catch (error) {
      if (error instanceof ConditionFailedError) return undefined;
      throw error;
    }
  }

  /**
   * Starts the backend kernel for a claimed record. Returns undefined when another start took the
   * record over meanwhile (the caller loops and finds that one's kernel).
   */
  private async launch(record: KernelRecord, request: StartRequest, restarted: boolean) {
    let ref: KernelRef;
    try {
      ref = await this.backend.start({
        owner: record.owner,
        kernelId: record.kernelId,
        env: mergeKernelEnv(this.settings.operatorEnv, request.env),
        ...(request.cwd === undefined ? {} : { cwd: request.cwd }),
      });
    } catch (error) {
      await this.store.delete(record).catch((cause) => logger.warn("start not abandoned", { cause }));
      throw error;
    }
    try {
      const spec = {
        ...(request.cwd === undefined ? {} : { cwd: request.cwd }),
        ...(request.env === undefined ? {} : { env: request.env }),
      };
      const done = await this.store.complete(record, ref, spec);
      this.refs.set(cacheKey(record.owner, record.kernelId), { incarnation: done.incarnation, ref });
      return toView(done, restarted);
    } catch (error) {
      await this.backend
        .stop(ref)
        .catch((cause) => logger.warn("could not stop a superseded kernel", { cause }));
      if (!(error instanceof ConditionFailedError)) {
        await this.store.delete(record).catch((cause) => logger.warn("start not abandoned", { cause }));
        throw error;
      }
      if (!(await this.store.get(record.owner, record.kernelId))) {
        throw new KernelStoppedError(`kernel '${record.kernelId}' was stopped while it was starting`);
      }
      return undefined;
    }
  }

  private async acquire(
    owner: string,
    kernelId: string,
    leaseId: string,
    leaseMs: number,
    busyWaitMs: number,
  ): Promise<KernelRecord> {
    const waitUntil = Date.now() + busyWaitMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.store.acquireLease(owner, kernelId, leaseId, Date.now() + leaseMs);
      } catch (error) {
        if (!(error instanceof ConditionFailedError)) throw error;
      }
      const record = await this.store.get(owner, kernelId);
      if (!record) throw notFound(kernelId);
      if (record.state === "dead") throw deadError(kernelId);
      if (Date.now() >= waitUntil) {
        throw record.state === "starting"
          ? new KernelStartingError(`kernel '${kernelId}' is still starting`, { retryAfterSeconds: 1 })
          : new KernelBusyError(`kernel '${kernelId}' is running another cell`, { retryAfterSeconds: 1 });
      }
      // Jittered and capped low: waiters that have waited longest must not poll least often, or
      // newcomers overtake them and the tail grows (measured by `npm run bench:load`).
      await sleep(Math.random() * Math.min(5 * 2 ** attempt, LEASE_POLL_MAX_MS));
    }
  }

  /**
   * The backend's ref of a record; undefined while it is starting. A ref this backend cannot read
   * is an error, never taken for a dead kernel: that would orphan a live one.
   */
  private refOf(record: KernelRecord): KernelRef | undefined {
    if (record.ref === undefined) return undefined;
    if (record.backend !== this.backend.name) {
      throw new CorruptRecordError(`kernel '${record.kernelId}' belongs to the ${record.backend} backend`);
    }
    try {
      return this.backend.parseRef(record.ref);
    } catch (cause) {
      throw new CorruptRecordError(`kernel '${record.kernelId}' has a ref this backend cannot read`, {
        cause,
      });
    }
  }

  /** {@link refOf} for clean-up paths: an unreadable ref is logged (for an operator) and skipped. */
  private readableRef(record: KernelRecord): KernelRef | undefined {
    try {
      return this.refOf(record);
    } catch (error) {
      logger.error("kernel ref unreadable; its kernel may need stopping by hand", { error: error as Error });
      return undefined;
    }
  }

  private async alive(record: KernelRecord): Promise<boolean> {
    const ref = this.refOf(record);
    return ref ? this.backend.isAlive(ref) : false;
  }

  /** Marks a kernel dead and makes sure nothing of it keeps running. */
  private async bury(record: KernelRecord): Promise<void> {
    this.refs.delete(cacheKey(record.owner, record.kernelId));
    await this.store.markDead(record).catch((cause) => logger.warn("could not mark kernel dead", { cause }));
    await this.stopQuietly(record);
  }

  private async stopQuietly(record: KernelRecord): Promise<void> {
    const ref = this.readableRef(record);
    if (!ref) return;
    await this.backend
      .stop(ref)
      .catch((cause) => logger.warn("could not stop kernel", { kernelId: record.kernelId, cause }));
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

function cacheKey(owner: string, kernelId: string): string {
  return JSON.stringify([owner, kernelId]);
}

function toView(record: KernelRecord, restarted?: boolean): KernelView {
  const busy = record.leaseUntil !== undefined && record.leaseUntil > Date.now();
  const state = record.state === "ready" ? (busy ? "busy" : "idle") : record.state;
  return {
    kernelId: record.kernelId,
    backend: record.backend,
    state,
    createdAt: record.createdAt,
    lastActivityAt: record.lastActivityAt,
    ...(restarted ? { restarted: true } : {}),
  };
}

function notFound(kernelId: string): NotFoundError {
  return new NotFoundError(`no kernel '${kernelId}'`);
}

function deadError(kernelId: string, cause?: unknown): KernelDeadError {
  return new KernelDeadError(
    `kernel '${kernelId}' has died and its state is lost; POST /kernels with this kernelId starts it again`,
    { cause },
  );
}
