import { randomUUID } from "node:crypto";
import type { Backend, KernelRef, StartSpec } from "../backends/port.ts";
import type { Config } from "../config.ts";
import { startOnlyVariable } from "../core/caller-env.ts";
import { ValidationError } from "../errors.ts";
import { logger } from "../logger.ts";
import { count, METRIC } from "../metrics.ts";
import type { PooledKernel, PoolStore } from "../store/pool-store.ts";
import { recordRoot } from "./file-helpers.ts";

/** The pool writes the sandbox relies on, named so a test can hand in an in-memory store. */
export type PoolRecords = Pick<PoolStore, "add" | "claim" | "list" | "remove">;

/** What the pool is told of the configuration: its size and age limit, and the operator's env. */
export type PoolSettings = Pick<Config, "pool" | "operatorEnv">;

/** The owner pooled kernels are started for; no caller can be it (callers are never asked to the backend by name). */
const POOL_OWNER = "pybox-warm-pool";

/** Bound on setting a pooled kernel up (see `KernelAccess.setUp`). */
const SET_UP_TIMEOUT_MS = 5_000;

/** Pooled kernels one start tries before it starts cold: each failed one was dead or broken. */
const ADOPTION_ATTEMPTS = 3;

/**
 * A pooled kernel handed to a start, and the refill it asked for: the start awaits `refilled`
 * before it answers (a frozen Lambda sends nothing), while it records the kernel meanwhile.
 */
export interface TakenKernel {
  ref: KernelRef;
  refilled: Promise<void>;
}

/** What one pass of the reaper did to the pool. */
export interface PoolReport {
  /** Pooled kernels stopped: too old, dead, or more than the pool's size. */
  retired: number;
  /** Kernels started to bring the pool back to its size. */
  filled: number;
}

/**
 * Kernels started ahead of demand, with the operator's env only, and set up as a start sets a
 * kernel up (its root recorded), recorded in the table with no owner. A start claims one with a conditional delete (two starts never get the same kernel),
 * hands it to its caller with a silent request, and asks for a refill through `refill` (the queue)
 * without waiting for it. A claimed kernel is the caller's for good, never returned. An empty,
 * disabled or refused pool means a cold start, never a failure.
 */
export class WarmPool {
  constructor(
    private readonly pools: PoolRecords,
    private readonly backend: Backend,
    private readonly settings: PoolSettings,
    private readonly refill: () => Promise<void>,
  ) {}

  /** Whether starts take kernels from the pool and passes fill it. */
  get enabled(): boolean {
    return this.settings.pool.size > 0 && this.backend.pooling !== undefined;
  }

  /**
   * A pooled kernel made this start's, or undefined for a cold start: the pool is off or empty, or
   * the start asks for what only a process start gives (`callerEnv` names the caller's own variables).
   * A claim, taken or not, asks for a refill.
   */
  async take(spec: StartSpec, callerEnv: Record<string, string> = {}): Promise<TakenKernel | undefined> {
    const pooling = this.backend.pooling;
    if (!pooling || !this.enabled) return undefined;
    const startOnly = startOnlyVariable(callerEnv);
    const refusal = startOnly ? `${startOnly} is read at process start` : pooling.refusal(spec);
    if (refusal) {
      logger.info("start bypasses the warm pool", { reason: refusal });
      return undefined;
    }
    // The operator's variables are the pooled kernel's already; only the caller's are new to it.
    const env = Object.fromEntries(
      Object.entries(callerEnv).filter(([name]) => !(name in this.settings.operatorEnv)),
    );
    for (let attempt = 0; attempt < ADOPTION_ATTEMPTS; attempt++) {
      const item = await this.pools.claim(pooling.key);
      if (!item) {
        count(METRIC.warmPoolEmpty);
        break;
      }
      const ref = this.readableRef(item);
      if (!ref) continue;
      try {
        const adopted = await pooling.adopt(ref, { ...spec, env });
        logger.info("kernel taken from the warm pool", { ageMs: Date.now() - item.startedAt });
        return { ref: adopted, refilled: this.requestRefill() };
      } catch (error) {
        await this.stopQuietly(ref);
        // The caller's own mistake (a cwd the gateway's host lacks) fails every kernel alike: say it
        // once, rather than spend the pool on it.
        if (error instanceof ValidationError) throw error;
        logger.warn("a pooled kernel could not be handed over; stopped it", { error: error as Error });
      }
    }
    await this.requestRefill();
    return undefined;
  }

  /**
   * Asks for a refill, after the claim (so it counts the pool without the claimed kernel): after the
   * hand-over when a kernel was taken (so the refill's kernel start does not compete with it on the
   * same peer), before the cold start when none was. Never fails: the reaper tops the pool up too.
   * Fills running at once (a refill, the reaper, `npm start`'s first fill) may start one kernel too
   * many; the reaper's next pass retires it.
   */
  private requestRefill(): Promise<void> {
    return this.refill().catch((error: unknown) =>
      logger.warn("warm pool refill not requested; the reaper tops it up", { error: error as Error }),
    );
  }

  /** Starts kernels until the pool holds its size; returns how many were started. */
  async fill(): Promise<number> {
    const pooling = this.backend.pooling;
    if (!pooling || !this.enabled) return 0;
    const missing = this.settings.pool.size - (await this.pools.list(pooling.key)).length;
    if (missing <= 0) return 0;
    const started = await Promise.allSettled(
      Array.from({ length: missing }, () => this.startOne(pooling.key)),
    );
    for (const outcome of started) {
      if (outcome.status === "rejected") {
        logger.warn("a warm pool kernel could not be started", { error: outcome.reason as Error });
      }
    }
    return started.filter((outcome) => outcome.status === "fulfilled").length;
  }

  /**
   * The reaper's pass over the pool: kernels older than the maximum age, dead, or beyond the size
   * (the oldest are kept) are retired, then the pool is filled.
   */
  async tend(): Promise<PoolReport> {
    const pooling = this.backend.pooling;
    if (!pooling) return { retired: 0, filled: 0 };
    const now = Date.now();
    let kept = 0;
    let retired = 0;
    for (const item of await this.pools.list(pooling.key)) {
      const ref = this.readableRef(item);
      const keep =
        ref !== undefined &&
        kept < this.settings.pool.size &&
        now - item.startedAt < this.settings.pool.maxAgeMs &&
        (await this.backend.isAlive(ref).catch(() => true));
      if (keep) kept++;
      else if (await this.pools.remove(item)) {
        if (ref) await this.stopQuietly(ref);
        retired++;
      }
    }
    const filled = await this.fill();
    count(METRIC.warmPoolSize, kept + filled);
    return { retired, filled };
  }

  /** Stops every pooled kernel and forgets it (the dev server on Ctrl-C); returns how many. */
  async drain(): Promise<number> {
    const pooling = this.backend.pooling;
    if (!pooling) return 0;
    const items = await this.pools.list(pooling.key);
    const drained = await Promise.all(
      items.map(async (item) => {
        if (!(await this.pools.remove(item))) return false;
        const ref = this.readableRef(item);
        if (ref) await this.stopQuietly(ref);
        return true;
      }),
    );
    return drained.filter(Boolean).length;
  }

  /** The refs of the pool's kernels, so the reaper's orphan sweep leaves them running. */
  async refs(): Promise<KernelRef[]> {
    const pooling = this.backend.pooling;
    if (!pooling) return [];
    const items = await this.pools.list(pooling.key);
    return items.flatMap((item) => this.readableRef(item) ?? []);
  }

  private async startOne(pool: string): Promise<void> {
    const ref = await this.backend.start({
      owner: POOL_OWNER,
      kernelId: `pool-${randomUUID()}`,
      env: { ...this.settings.operatorEnv },
    });
    // Set up as a start would set it up (its root recorded), so a claim need not: a kernel only
    // moved by its adoption (into a caller's cwd) is set up again there.
    await this.backend
      .helper(ref, { ...recordRoot(), timeoutMs: SET_UP_TIMEOUT_MS })
      .catch(async (error: unknown) => {
        await this.stopQuietly(ref);
        throw error;
      });
    // A kernel outlives its item's TTL only when the reaper stopped running: the orphan sweep ends it.
    const ttlSeconds = Math.ceil((2 * this.settings.pool.maxAgeMs) / 1_000);
    await this.pools.add(pool, this.backend.name, ref, ttlSeconds).catch(async (error: unknown) => {
      await this.stopQuietly(ref);
      throw error;
    });
  }

  private readableRef(item: PooledKernel): KernelRef | undefined {
    if (item.backend !== this.backend.name) return undefined;
    try {
      return this.backend.parseRef(item.ref);
    } catch (error) {
      logger.error("pooled kernel ref unreadable; its kernel is left to the orphan sweep", {
        error: error as Error,
      });
      return undefined;
    }
  }

  private async stopQuietly(ref: KernelRef): Promise<void> {
    await this.backend.stop(ref).catch((cause) => logger.warn("could not stop a pooled kernel", { cause }));
  }
}
