import { randomUUID } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { Backend, KernelRef } from "../backends/port.ts";
import type { Config } from "../config.ts";
import type { KernelView, StartRequest } from "../core/kernel.ts";
import {
  ConditionFailedError,
  CorruptRecordError,
  KernelBusyError,
  KernelDeadError,
  KernelDiedError,
  KernelStartingError,
  KernelStoppedError,
  NotFoundError,
  ValidationError,
} from "../errors.ts";
import { logger } from "../logger.ts";
import { count, METRIC } from "../metrics.ts";
import type { KernelRecord, KernelStore } from "../store/kernel-store.ts";
import { type FileHelper, recordRoot, sweepUploads } from "./file-helpers.ts";
import { mergeKernelEnv } from "./kernel-env.ts";
import { LeaseWaiters } from "./lease-waiters.ts";
import type { TakenKernel, WarmPool } from "./warm-pool.ts";

/** The limits and waits the service applies: exactly these parts of `Config`. */
export type SandboxSettings = Pick<
  Config,
  "operatorEnv" | "startTimeoutMs" | "run" | "maxKernelsPerCaller" | "files"
>;

/**
 * The kernel-record writes the sandbox relies on, named so a test can hand in an in-memory store
 * with the same conditional-write rules instead of DynamoDB.
 */
export type KernelRecords = Pick<
  KernelStore,
  | "get"
  | "create"
  | "claim"
  | "complete"
  | "acquireLease"
  | "releaseLease"
  | "markDead"
  | "retire"
  | "clearLease"
  | "delete"
  | "countLive"
  | "deleteIdle"
  | "scanAll"
>;

/** A kernel's ref as last read in this container, tagged with the incarnation it belongs to. */
export interface CachedRef {
  incarnation: string;
  ref: KernelRef;
}

/** How many kernels' refs one container remembers. */
const REF_CACHE_SIZE = 1_000;

/** Slack on leases and start claims, so a slow write never frees a kernel still in use. */
export const LEASE_MARGIN_MS = 30_000;

/** Kept back from an invocation's deadline to give the lease back and answer. */
export const DEADLINE_RESERVE_MS = 1_000;

/** Longest pause between two tries for a busy kernel's lease. */
const LEASE_POLL_MAX_MS = 50;
/** Bound on the silent set-up request of a kernel just started (recording its root). */
const SETUP_HELPER_MS = 5_000;

/** How one piece of work under a kernel's lease, other than a run, is bounded. */
export interface LeaseLimits {
  /** Epoch ms by which the invocation must have answered. */
  deadline?: number;
  /** Longest the work under the lease may take (the lease is taken for that long, and a margin). */
  workMs: number;
  /** What a wait for a busy kernel leaves of the time before the deadline, for the work; default `workMs`. */
  reserveMs?: number;
  /** How long to wait for a kernel another holder has; default the configured busy wait. */
  busyWaitMs?: number;
  /** Whether the work counts as the caller's activity (default); the reaper's own does not. */
  touch?: boolean;
}

/**
 * What every room of the sandbox (lifecycle, runs, housekeeping) reaches kernels through: the
 * records, the backend, the settings and the one cache of refs this container has read, so a ref
 * forgotten by a stop is forgotten for runs too. Holds no state beyond that cache, the leases
 * this container's runs hold and the queue of those waiting for one.
 */
export class KernelAccess {
  private readonly refs = new LRUCache<string, CachedRef>({ max: REF_CACHE_SIZE });
  private readonly waiters = new LeaseWaiters();

  constructor(
    readonly store: KernelRecords,
    readonly backend: Backend,
    readonly settings: SandboxSettings,
    readonly pool?: WarmPool,
  ) {}

  /** How long a start may hold its claim before another invocation may take the record over. */
  get claimMs(): number {
    return this.settings.startTimeoutMs + LEASE_MARGIN_MS;
  }

  /** The ref this container last used for the caller's kernel, to connect before the lease is ours. */
  remembered(owner: string, kernelId: string): CachedRef | undefined {
    return this.refs.get(cacheKey(owner, kernelId));
  }

  /** Remembers where this incarnation of a kernel lives, for the next run in this container. */
  remember(record: KernelRecord, ref: KernelRef): void {
    this.refs.set(cacheKey(record.owner, record.kernelId), { incarnation: record.incarnation, ref });
  }

  /** Forgets a kernel's ref: it was stopped, replaced or found stale. */
  forget(owner: string, kernelId: string): void {
    this.refs.delete(cacheKey(owner, kernelId));
  }

  /** Forgets every ref (all kernels were stopped). */
  forgetAll(): void {
    this.refs.clear();
  }

  /**
   * Takes the kernel's run lease, waiting up to `busyWaitMs` while another holder has it; a kernel
   * gone is `NOT_FOUND`, a dead one `KERNEL_DEAD`, and one still busy (or starting) when the wait
   * is over `KERNEL_BUSY` (`KERNEL_STARTING`) with `Retry-After`.
   */
  async acquire(
    owner: string,
    kernelId: string,
    leaseId: string,
    leaseMs: number,
    busyWaitMs: number,
    touch = true,
  ): Promise<KernelRecord> {
    const waitUntil = Date.now() + busyWaitMs;
    const key = leaseKey(owner, kernelId);
    let turn: ReturnType<LeaseWaiters["join"]> | undefined;
    let took = false;
    // A lease a run of this process holds will be released here, and that wakes us; runs of this
    // process already waiting go first. Either way a first try would only fail.
    let tryNow = !this.waiters.queueFirst(key);
    try {
      for (let attempt = 0; ; attempt++) {
        if (tryNow) {
          try {
            const until = Date.now() + leaseMs;
            const record = await this.store.acquireLease(owner, kernelId, leaseId, until, touch);
            took = true;
            this.waiters.held(key, until);
            return record;
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
        }
        tryNow = true;
        // Jittered and capped low: waiters that have waited longest must not poll least often, or
        // newcomers overtake them and the tail grows (measured by `npm run bench:load`). Waiters of
        // this process queue behind the oldest, which alone polls; a release here wakes it at once.
        turn ??= this.waiters.join(key);
        const pollMs = Math.random() * Math.min(5 * 2 ** attempt, LEASE_POLL_MAX_MS);
        await turn.pause(pollMs, Math.max(0, waitUntil - Date.now()));
      }
    } finally {
      turn?.leave(took);
    }
  }

  /**
   * A lease that ended without a release here (a stuck kernel's record was claimed for its
   * restart): runs of this process waiting for it look at the table at once.
   */
  leaseGone(owner: string, kernelId: string): void {
    this.waiters.released(leaseKey(owner, kernelId));
  }

  /** Gives a lease back; one that cannot be is logged, and expires by itself. */
  async release(owner: string, kernelId: string, leaseId: string, touch = true): Promise<void> {
    await this.store
      .releaseLease(owner, kernelId, leaseId, touch)
      .catch((cause) => logger.warn("lease not released; it expires by itself", { kernelId, cause }));
    this.waiters.released(leaseKey(owner, kernelId));
  }

  /**
   * Does `use` under the kernel's run lease, as a run would hold it, so it never interleaves with a
   * run: the wait for a busy kernel is cut to leave `reserveMs` before the deadline. A kernel that
   * dies meanwhile is buried and said dead (or stopped, when a stop came first).
   */
  async withLease<T>(
    owner: string,
    kernelId: string,
    limits: LeaseLimits,
    use: (ref: KernelRef, record: KernelRecord) => Promise<T>,
  ): Promise<T> {
    const reserve = limits.reserveMs ?? limits.workMs;
    const budget = (limits.deadline ?? Number.POSITIVE_INFINITY) - Date.now() - reserve - DEADLINE_RESERVE_MS;
    const busyWaitMs = Math.max(0, Math.min(limits.busyWaitMs ?? this.settings.run.busyWaitMs, budget));
    const leaseId = randomUUID();
    const touch = limits.touch ?? true;
    const record = await this.acquire(
      owner,
      kernelId,
      leaseId,
      limits.workMs + LEASE_MARGIN_MS,
      busyWaitMs,
      touch,
    );
    let buried = false;
    try {
      const ref = this.refOf(record);
      if (!ref) throw new CorruptRecordError(`kernel '${kernelId}' is ready but has no ref`);
      this.remember(record, ref);
      return await use(ref, record);
    } catch (error) {
      if (!(error instanceof KernelDiedError)) throw error;
      buried = true;
      const current = await this.store.get(owner, kernelId).catch(() => record);
      await this.bury(record);
      if (current?.incarnation !== record.incarnation) {
        throw new KernelStoppedError(`kernel '${kernelId}' was stopped while this request was under way`);
      }
      throw deadError(kernelId, error);
    } finally {
      if (!buried) await this.release(owner, kernelId, leaseId, touch);
    }
  }

  /**
   * A silent helper request of ours that must not fail what it is part of (recording the root, a
   * sweep of abandoned uploads): a failure is logged and the caller goes on.
   */
  async helperQuietly(
    ref: KernelRef,
    helper: FileHelper<null>,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    await this.backend
      .helper(ref, { ...helper, timeoutMs })
      .catch((error: unknown) => logger.warn(`could not ${what}`, { error: error as Error }));
  }

  /**
   * The silent set-up of a kernel just started or restarted, before any code of the caller's: it
   * records its root (files are relative to where it started, whatever `os.chdir` comes later).
   */
  async setUp(ref: KernelRef): Promise<void> {
    await this.helperQuietly(ref, recordRoot(), SETUP_HELPER_MS, "record the kernel's root");
  }

  /**
   * Removes the kernel's abandoned uploads before it stops (all of them: none can go on), unless a
   * run holds it (then the request would wait behind the run's cell). About a second at most, for a
   * kernel that answers; three for one that does not.
   */
  async sweepBeforeStop(record: KernelRecord, ref: KernelRef): Promise<void> {
    if (record.state !== "ready" || (record.leaseUntil !== undefined && record.leaseUntil > Date.now()))
      return;
    await this.helperQuietly(ref, sweepUploads(0, 1), 3_000, "remove abandoned uploads");
  }

  /**
   * Starts the backend kernel for a claimed record. Returns undefined when another start took the
   * record over meanwhile (the caller loops and finds that one's kernel).
   */
  async launch(
    record: KernelRecord,
    request: StartRequest,
    restarted: boolean,
  ): Promise<KernelView | undefined> {
    let ref: KernelRef;
    let pooled: TakenKernel | undefined;
    const start = {
      owner: record.owner,
      kernelId: record.kernelId,
      env: mergeKernelEnv(this.settings.operatorEnv, request.env),
      ...(request.cwd === undefined ? {} : { cwd: request.cwd }),
    };
    try {
      pooled = await this.pool?.take(start, request.env).catch((error: unknown) => {
        if (error instanceof ValidationError) throw error; // the caller's: a cold start would say it too
        logger.warn("warm pool unavailable; starting cold", { error: error as Error });
        return undefined;
      });
      ref = pooled?.ref ?? (await this.backend.start(start));
      count(pooled ? METRIC.kernelStartsPooled : METRIC.kernelStartsCold);
    } catch (error) {
      await this.store.delete(record).catch((cause) => logger.warn("start not abandoned", { cause }));
      throw error;
    }
    // A pooled kernel was set up in the pool, unless its adoption moved it into the caller's cwd.
    if (!pooled || start.cwd !== undefined) await this.setUp(ref);
    try {
      const spec = {
        ...(request.cwd === undefined ? {} : { cwd: request.cwd }),
        ...(request.env === undefined ? {} : { env: request.env }),
      };
      const completing = this.store.complete(record, ref, spec);
      completing.catch(() => undefined);
      await pooled?.refilled;
      const done = await completing;
      this.remember(done, ref);
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

  /**
   * The backend's ref of a record; undefined while it is starting. A ref this backend cannot read
   * is an error, never taken for a dead kernel: that would orphan a live one.
   */
  refOf(record: KernelRecord): KernelRef | undefined {
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
  readableRef(record: KernelRecord): KernelRef | undefined {
    try {
      return this.refOf(record);
    } catch (error) {
      logger.error("kernel ref unreadable; its kernel may need stopping by hand", { error: error as Error });
      return undefined;
    }
  }

  /** Whether the record's kernel still runs; a record without a ref (starting) has none running. */
  async alive(record: KernelRecord): Promise<boolean> {
    const ref = this.refOf(record);
    return ref ? this.backend.isAlive(ref) : false;
  }

  /** Marks a kernel dead and makes sure nothing of it keeps running. */
  async bury(record: KernelRecord): Promise<void> {
    this.forget(record.owner, record.kernelId);
    await this.store.markDead(record).catch((cause) => logger.warn("could not mark kernel dead", { cause }));
    this.waiters.released(leaseKey(record.owner, record.kernelId));
    await this.stopQuietly(record);
  }

  /** Stops the record's kernel on clean-up paths, where a failure is logged and must not end the pass. */
  async stopQuietly(record: KernelRecord): Promise<void> {
    const ref = this.readableRef(record);
    if (!ref) return;
    await this.backend
      .stop(ref)
      .catch((cause) => logger.warn("could not stop kernel", { kernelId: record.kernelId, cause }));
  }
}

/** A record as its caller may see it: a live lease reads as `busy`. */
export function toView(record: KernelRecord, restarted?: boolean): KernelView {
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

/** The one wording of "no such kernel", the same whether it never existed or is another caller's. */
export function notFound(kernelId: string): NotFoundError {
  return new NotFoundError(`no kernel '${kernelId}'`);
}

/** The one wording of a dead kernel, saying how to get a fresh one. */
export function deadError(kernelId: string, cause?: unknown): KernelDeadError {
  return new KernelDeadError(
    `kernel '${kernelId}' has died and its state is lost; POST /kernels with this kernelId starts it again`,
    { cause },
  );
}

function cacheKey(owner: string, kernelId: string): string {
  return JSON.stringify([owner, kernelId]);
}

/** One kernel's key among {@link LeaseWaiters}' queues. */
function leaseKey(owner: string, kernelId: string): string {
  return `${owner}\u0000${kernelId}`;
}
