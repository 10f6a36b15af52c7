import type { Backend } from "../backends/port.ts";
import type { KernelView, StartRequest } from "../core/kernel.ts";
import type { RunResult } from "../core/run-result.ts";
import { count, duration, METRIC, recordRun } from "../metrics.ts";
import { KernelFiles } from "./files.ts";
import { HostTenancy, type SharedHostPolicy, type TenancyRecords } from "./host-tenancy.ts";
import { Housekeeping, type ReapReport } from "./housekeeping.ts";
import { KernelAccess, type KernelRecords, type SandboxSettings } from "./kernel-access.ts";
import { KernelLifecycle, type StartOutcome } from "./lifecycle.ts";
import { KernelRuns, type RunLimits } from "./runs.ts";
import { type PoolRecords, type PoolSettings, WarmPool } from "./warm-pool.ts";

export type { KernelView, StartRequest } from "../core/kernel.ts";
export type { FileBytes, FileLimits, PutOutcome } from "./files.ts";
export type { ReapReport } from "./housekeeping.ts";
export type { KernelRecords, SandboxSettings } from "./kernel-access.ts";
export type { StartOutcome } from "./lifecycle.ts";
export type { RunLimits } from "./runs.ts";

/**
 * Start, run, get and stop, per caller, plus the passes that clean up after them: the one object
 * handlers, the queue consumer and the dev server hold. Stateless but for a cache of kernel refs:
 * every call reads what it needs from the store, so any container can serve any kernel. The work
 * is done in rooms sharing one {@link KernelAccess}: `lifecycle.ts`, `runs.ts`, `files.ts` and
 * `housekeeping.ts`.
 */
export class SandboxService {
  /** Files in and out of the caller's kernels, each request under the kernel's lease (see {@link KernelFiles}). */
  readonly files: KernelFiles;
  private readonly lifecycle: KernelLifecycle;
  private readonly runs: KernelRuns;
  private readonly housekeeping: Housekeeping;

  private readonly pool: WarmPool | undefined;
  private readonly tenancy: HostTenancy | undefined;

  /**
   * `pool`, when given, is where warm kernels are recorded and how a refill is asked for (see
   * {@link WarmPool}); `tenancy`, where the one caller of a shared-host backend is kept and what
   * the operator decided (see {@link HostTenancy}).
   */
  constructor(
    store: KernelRecords,
    backend: Backend,
    settings: SandboxSettings & Partial<PoolSettings>,
    extras: {
      pool?: { records: PoolRecords; refill: () => Promise<void> };
      tenancy?: { records: TenancyRecords; policy: SharedHostPolicy };
    } = {},
  ) {
    const { pool, tenancy } = extras;
    this.pool =
      pool && settings.pool
        ? new WarmPool(
            pool.records,
            backend,
            { pool: settings.pool, operatorEnv: settings.operatorEnv },
            pool.refill,
          )
        : undefined;
    this.tenancy = tenancy && new HostTenancy(tenancy.records, backend, tenancy.policy);
    const kernels = new KernelAccess(store, backend, settings, this.pool);
    this.lifecycle = new KernelLifecycle(kernels, this.tenancy);
    this.runs = new KernelRuns(kernels);
    this.files = new KernelFiles(kernels);
    this.housekeeping = new Housekeeping(kernels);
  }

  /** Get-or-create, as pybox's `start` (see {@link KernelLifecycle.start}). */
  async start(owner: string, request: StartRequest, limits?: { deadline?: number }): Promise<StartOutcome> {
    const started = Date.now();
    const outcome = await this.lifecycle.start(owner, request, limits);
    if (outcome.created) duration(METRIC.startDuration, Date.now() - started);
    if (outcome.kernel.restarted) count(METRIC.kernelsRevived);
    return outcome;
  }

  /** The caller's kernel, its liveness checked (see {@link KernelLifecycle.get}). */
  get(owner: string, kernelId: string): Promise<KernelView> {
    return this.lifecycle.get(owner, kernelId);
  }

  /** Runs code under the kernel's lease, within the invocation's deadline (see {@link KernelRuns.run}). */
  async run(owner: string, kernelId: string, code: string, limits?: RunLimits): Promise<RunResult> {
    const result = await this.runs.run(owner, kernelId, code, limits);
    recordRun(result);
    return result;
  }

  /** Interrupts the caller's kernel outside any run's lease (see {@link KernelLifecycle.interrupt}). */
  interrupt(owner: string, kernelId: string): Promise<void> {
    return this.lifecycle.interrupt(owner, kernelId);
  }

  /** Idempotent stop (see {@link KernelLifecycle.stop}). */
  stop(owner: string, kernelId: string): Promise<void> {
    return this.lifecycle.stop(owner, kernelId);
  }

  /** The dev server's re-attach after a crash (see {@link Housekeeping.recover}). */
  recover(): Promise<{ reattached: number; cleaned: number }> {
    return this.housekeeping.recover();
  }

  /** One reaper pass (see {@link Housekeeping.reap}). */
  reap(idleMs: number, orphanGraceMs?: number): Promise<ReapReport> {
    return this.housekeeping.reap(idleMs, orphanGraceMs);
  }

  /** Brings the warm pool to its size (a refill message, `npm start`'s own fill); returns how many started. */
  refillPool(): Promise<number> {
    return this.pool?.fill() ?? Promise.resolve(0);
  }

  /** Why callers' kernels would share a host on this backend, or undefined (see {@link HostTenancy}). */
  sharedHost(): Promise<string | undefined> {
    return this.tenancy?.sharedHost() ?? Promise.resolve(undefined);
  }

  /** Stops every kernel of this backend (see {@link Housekeeping.stopAll}). */
  stopAll(): Promise<number> {
    return this.housekeeping.stopAll();
  }
}
