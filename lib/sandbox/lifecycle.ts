import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { KernelView, StartRequest } from "../core/kernel.ts";
import { CapacityError, ConditionFailedError, KernelStartingError } from "../errors.ts";
import { logger } from "../logger.ts";
import type { KernelRecord } from "../store/kernel-store.ts";
import type { HostTenancy } from "./host-tenancy.ts";
import { DEADLINE_RESERVE_MS, type KernelAccess, notFound, toView } from "./kernel-access.ts";

/** Whether a kernel was made (`201`) or the caller's live one returned (`200`). */
export interface StartOutcome {
  created: boolean;
  kernel: KernelView;
}

/**
 * Start, get and stop of one caller's kernel. Every change of ownership is a conditional write,
 * so concurrent invocations agree on one kernel per (owner, kernelId).
 */
export class KernelLifecycle {
  constructor(
    private readonly kernels: KernelAccess,
    private readonly tenancy?: HostTenancy,
  ) {}

  /**
   * Get-or-create, as pybox's `start`: the caller's live kernel by that id is returned; a dead one
   * is replaced (`restarted: true`); concurrent starts of one id wait for the one that won. On a
   * backend whose callers would share a host, only an admitted caller starts (see {@link HostTenancy}).
   */
  async start(
    owner: string,
    request: StartRequest,
    limits: { deadline?: number } = {},
  ): Promise<StartOutcome> {
    await this.tenancy?.admit(owner);
    const kernelId = request.kernelId ?? randomUUID();
    // Waiting for another start ends in time for the invocation to answer `KERNEL_STARTING` itself.
    const deadline = Math.min(
      Date.now() + this.kernels.claimMs,
      (limits.deadline ?? Number.POSITIVE_INFINITY) - DEADLINE_RESERVE_MS,
    );
    for (let attempt = 0; ; attempt++) {
      const existing = await this.kernels.store.get(owner, kernelId);
      if (existing?.state === "ready" && (await this.kernels.alive(existing))) {
        return { created: false, kernel: toView(existing) };
      }
      if (!existing) await this.checkKernelLimit(owner);
      const claimed = await this.claim(owner, kernelId, existing);
      if (claimed) {
        if (existing?.ref) await this.kernels.stopQuietly(existing);
        const kernel = await this.kernels.launch(
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
    const record = await this.kernels.store.get(owner, kernelId);
    if (!record) throw notFound(kernelId);
    if (record.state === "ready" && !(await this.kernels.alive(record))) {
      await this.kernels.bury(record);
      return toView({ ...record, state: "dead" });
    }
    return toView(record);
  }

  /**
   * Interrupts what the caller's kernel is running, without taking its lease: for a streamed run
   * whose client hung up, once that run's own output proved its cell is the one running (the run
   * then ends with the interrupt and gives the lease back). A kernel that is not there, or cannot
   * be reached, is left as it is.
   */
  async interrupt(owner: string, kernelId: string): Promise<void> {
    const record = await this.kernels.store.get(owner, kernelId).catch(() => undefined);
    const ref = record?.state === "ready" ? this.kernels.readableRef(record) : undefined;
    if (!ref) return;
    await this.kernels.backend
      .interrupt(ref)
      .catch((error: unknown) =>
        logger.warn("could not interrupt the kernel", { kernelId, error: error as Error }),
      );
  }

  /**
   * Stops the caller's kernel and forgets it; stopping a kernel that is gone already succeeds. The
   * record is retired before the kernel is killed, so a run dying under the stop always reads
   * "stopped"; a record replaced meanwhile (a concurrent restart) is left to its new owner.
   */
  async stop(owner: string, kernelId: string): Promise<void> {
    const { store, backend } = this.kernels;
    this.kernels.forget(owner, kernelId);
    const record = await store.get(owner, kernelId);
    if (!record) return;
    const ref = this.kernels.readableRef(record);
    if (!ref) return await store.delete(record);
    await this.kernels.sweepBeforeStop(record, ref);
    const retired = await store.retire(record);
    if (!retired) return;
    await backend.stop(ref);
    await store.delete(retired);
  }

  /**
   * A caller may hold `maxKernelsPerCaller` live kernels; one more is a 429 that says how to free
   * one. Counted when a new id is started (reviving or returning a kernel never counts twice);
   * concurrent starts of different new ids may pass together, so the limit is exact only up to them.
   */
  private async checkKernelLimit(owner: string): Promise<void> {
    const max = this.kernels.settings.maxKernelsPerCaller;
    if ((await this.kernels.store.countLive(owner)) < max) return;
    throw new CapacityError(
      `you have ${max} kernels, the most a caller may hold; stop one (DELETE /kernels/{kernelId}) and try again`,
      { retryAfterSeconds: 30 },
    );
  }

  /** Makes this invocation the one that starts the kernel, or returns undefined when another is. */
  private async claim(owner: string, kernelId: string, existing: KernelRecord | undefined) {
    const until = Date.now() + this.kernels.claimMs;
    const stalled = existing?.state === "starting" && (existing.startingUntil ?? 0) < Date.now();
    const { store, backend } = this.kernels;
    try {
      if (!existing) return await store.create(owner, kernelId, backend.name, until);
      if (existing.state === "starting" && !stalled) return undefined;
      return await store.claim(existing, backend.name, until);
    } catch (error) {
      if (error instanceof ConditionFailedError) return undefined;
      throw error;
    }
  }
}
