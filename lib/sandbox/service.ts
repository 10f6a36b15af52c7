import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { LRUCache } from "lru-cache";
import type { Backend, KernelRef } from "../backends/port.ts";
import {
  ConditionFailedError,
  KernelBusyError,
  KernelDeadError,
  KernelDiedError,
  KernelStartingError,
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

/** The limits and waits the service applies; from `Config`. */
export interface SandboxSettings {
  operatorEnv: Record<string, string>;
  startTimeoutMs: number;
  run: {
    defaultTimeoutMs: number;
    maxTimeoutMs: number;
    interruptGraceMs: number;
    busyWaitMs: number;
    maxCodeBytes: number;
    maxOutputBytes: number;
  };
}

/** A kernel's ref as last read in this container, tagged with the record version it came from. */
interface CachedRef {
  version: number;
  ref: KernelRef;
}

/** How many kernels' refs one container remembers. */
const REF_CACHE_SIZE = 1_000;

/** Slack on leases and start claims, so a slow write never frees a kernel still in use. */
const LEASE_MARGIN_MS = 30_000;

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
  async start(owner: string, request: StartRequest): Promise<StartOutcome> {
    const kernelId = request.kernelId ?? randomUUID();
    const deadline = Date.now() + this.settings.startTimeoutMs + LEASE_MARGIN_MS;
    for (let attempt = 0; ; attempt++) {
      const existing = await this.store.get(owner, kernelId);
      if (existing?.state === "ready" && (await this.alive(existing))) {
        return { created: false, kernel: toView(existing) };
      }
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
      await this.store.markDead(record);
      return toView({ ...record, state: "dead" });
    }
    return toView(record);
  }

  /**
   * Runs code in the caller's kernel. Runs on one kernel are serialised by a lease, so a timeout
   * interrupts only its own code; a run waits a bounded time for the lease, then gets `KERNEL_BUSY`.
   */
  async run(owner: string, kernelId: string, code: string, timeoutMs?: number): Promise<RunResult> {
    const { run } = this.settings;
    if (Buffer.byteLength(code, "utf8") > run.maxCodeBytes) {
      throw new PayloadTooLargeError(`code exceeds ${run.maxCodeBytes} bytes`);
    }
    const timeout = timeoutMs ?? run.defaultTimeoutMs;
    if (!Number.isInteger(timeout) || timeout < 1 || timeout > run.maxTimeoutMs) {
      throw new ValidationError(`timeoutMs must be an integer from 1 to ${run.maxTimeoutMs}`);
    }
    const options = {
      timeoutMs: timeout,
      interruptGraceMs: run.interruptGraceMs,
      maxOutputBytes: run.maxOutputBytes,
    };
    const leaseId = randomUUID();
    const lease = this.acquire(owner, kernelId, leaseId, timeout + run.interruptGraceMs + LEASE_MARGIN_MS);
    lease.catch(() => undefined);
    let record: KernelRecord | undefined;
    let dead = false;
    try {
      // With the kernel's address known from an earlier call in this container, connect and
      // handshake while the lease is being taken; the code goes out only once it is ours.
      const cached = this.refs.get(cacheKey(owner, kernelId));
      if (cached) {
        const admitted = lease.then((held) => {
          record = held;
          if (held.version !== cached.version) throw new StaleRefError();
        });
        try {
          return await this.backend.run(cached.ref, code, { ...options, admitted });
        } catch (error) {
          record = await lease;
          if (record.version === cached.version) throw error;
        }
      }
      record ??= await lease;
      const ref = this.refOf(record);
      if (!ref) throw new KernelDiedError("the kernel belongs to another backend");
      this.refs.set(cacheKey(owner, kernelId), { version: record.version, ref });
      return await this.backend.run(ref, code, options);
    } catch (error) {
      if (!(error instanceof KernelDiedError) || !record) throw error;
      dead = true;
      this.refs.delete(cacheKey(owner, kernelId));
      await this.store.markDead(record);
      throw deadError(kernelId, error);
    } finally {
      if (record && !dead) await this.store.releaseLease(owner, kernelId, leaseId);
    }
  }

  /** Stops the caller's kernel and forgets it; stopping a kernel that is gone already succeeds. */
  async stop(owner: string, kernelId: string): Promise<void> {
    this.refs.delete(cacheKey(owner, kernelId));
    const record = await this.store.get(owner, kernelId);
    if (!record) return;
    const ref = this.refOf(record);
    if (ref) await this.backend.stop(ref);
    await this.store.delete(record);
  }

  /**
   * Finds this backend's kernels left by an earlier process (the dev server after a crash):
   * live ones are kept and served again, dead ones are cleaned up. Never per request.
   */
  async recover(): Promise<{ reattached: number; cleaned: number }> {
    let reattached = 0;
    let cleaned = 0;
    for await (const record of this.store.scanAll()) {
      if (record.backend !== this.backend.name) continue;
      if (record.state === "ready" && (await this.alive(record))) {
        reattached++;
      } else if (record.state !== "starting" || (record.startingUntil ?? 0) < Date.now()) {
        await this.stopQuietly(record);
        await this.store.delete(record);
        cleaned++;
      }
    }
    return { reattached, cleaned };
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
    return records.length;
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

  /** Starts the backend kernel for a claimed record; undefined when the record was taken meanwhile. */
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
      await this.store.abandon(record);
      throw error;
    }
    try {
      const done = await this.store.complete(record, ref);
      return toView(done, restarted);
    } catch (error) {
      await this.backend
        .stop(ref)
        .catch((cause) => logger.warn("could not stop a superseded kernel", { cause }));
      if (error instanceof ConditionFailedError) return undefined;
      throw error;
    }
  }

  private async acquire(
    owner: string,
    kernelId: string,
    leaseId: string,
    leaseMs: number,
  ): Promise<KernelRecord> {
    const waitUntil = Date.now() + this.settings.run.busyWaitMs;
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
      await sleep(Math.min(10 * 2 ** attempt, 250));
    }
  }

  private refOf(record: KernelRecord): KernelRef | undefined {
    if (record.backend !== this.backend.name || record.ref === undefined) return undefined;
    try {
      return this.backend.parseRef(record.ref);
    } catch (cause) {
      logger.warn("unreadable kernel ref in store", { kernelId: record.kernelId, cause });
      return undefined;
    }
  }

  private async alive(record: KernelRecord): Promise<boolean> {
    const ref = this.refOf(record);
    return ref ? this.backend.isAlive(ref) : false;
  }

  private async stopQuietly(record: KernelRecord): Promise<void> {
    const ref = this.refOf(record);
    if (!ref) return;
    await this.backend
      .stop(ref)
      .catch((cause) => logger.warn("could not stop kernel", { kernelId: record.kernelId, cause }));
  }
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
