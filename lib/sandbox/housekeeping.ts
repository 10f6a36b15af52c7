import type { KernelInventory } from "../backends/port.ts";
import { logger } from "../logger.ts";
import type { KernelRecord } from "../store/kernel-store.ts";
import { ABANDONED_UPLOAD_SECONDS, sweepUploads } from "./file-helpers.ts";
import type { KernelAccess } from "./kernel-access.ts";

/** Bound on one kernel's sweep of abandoned uploads in a reaper pass. */
const SWEEP_MS = 5_000;

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
  /** Warm pool kernels retired (too old, dead, or beyond the pool's size). */
  poolRetired: number;
  /** Warm pool kernels started to bring it back to its size. */
  poolFilled: number;
}

/**
 * The passes over every record of this backend that no single request makes: the reaper's, the
 * dev server's recovery after a crash, and its stop of everything on exit.
 */
export class Housekeeping {
  constructor(private readonly kernels: KernelAccess) {}

  /**
   * Finds this backend's kernels left by an earlier process (the dev server after a crash):
   * live ones are kept and served again (the dead process's leases dropped), dead ones are
   * cleaned up. Never per request.
   */
  async recover(): Promise<{ reattached: number; cleaned: number }> {
    const { store, backend } = this.kernels;
    let reattached = 0;
    let cleaned = 0;
    for await (const record of store.scanAll()) {
      if (record.backend !== backend.name) continue;
      if (record.state === "ready" && (await this.kernels.alive(record).catch(() => false))) {
        await store.clearLease(record);
        reattached++;
      } else if (record.state !== "starting" || (record.startingUntil ?? 0) < Date.now()) {
        await this.kernels.stopQuietly(record);
        await store.delete(record);
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
    const { store, backend } = this.kernels;
    const report: ReapReport = {
      idle: 0,
      dead: 0,
      forgotten: 0,
      stalled: 0,
      orphans: 0,
      poolRetired: 0,
      poolFilled: 0,
    };
    const inventory = backend.inventory;
    const known = new Set<string>();
    let unreadable = 0;
    const now = Date.now();
    for await (const record of store.scanAll(() => unreadable++)) {
      if (record.backend !== backend.name) continue;
      const ref = this.kernels.readableRef(record);
      if (ref && inventory) known.add(inventory.keyOf(ref));
      if (!ref && record.ref !== undefined) unreadable++;
      const idle = now - Date.parse(record.lastActivityAt) > idleMs;
      if (record.state === "starting") {
        if ((record.startingUntil ?? 0) >= now) continue;
        await this.kernels.stopQuietly(record);
        await store.delete(record);
        report.stalled++;
      } else if (record.state === "dead") {
        if (!idle) continue;
        await this.kernels.stopQuietly(record);
        await store.delete(record);
        report.forgotten++;
      } else if (record.leaseUntil !== undefined && record.leaseUntil > now) {
        // A run holds it: in use, whatever its last activity says.
      } else if (idle) {
        if (!(await store.deleteIdle(record))) continue;
        this.kernels.forget(record.owner, record.kernelId);
        if (ref) await this.kernels.sweepBeforeStop(record, ref);
        await this.kernels.stopQuietly(record);
        report.idle++;
      } else if (!(await this.kernels.alive(record).catch(() => true))) {
        await this.kernels.bury(record);
        report.dead++;
      } else if (now - Date.parse(record.lastActivityAt) > ABANDONED_UPLOAD_SECONDS * 1_000) {
        await this.sweepAbandoned(record);
      }
    }
    for (const ref of (await this.kernels.pool?.refs()) ?? []) if (inventory) known.add(inventory.keyOf(ref));
    if (inventory && unreadable > 0) {
      logger.warn("orphan sweep skipped: some records could not be read, their kernels could look orphaned");
    } else if (inventory) {
      const grace = orphanGraceMs ?? this.kernels.claimMs;
      const candidates = (await inventory.list()).filter(
        (kernel) => !known.has(inventory.keyOf(kernel.ref)) && now - kernel.startedAt >= grace,
      );
      // Read the records once more: a start may have recorded one of them since the scan.
      const recorded = candidates.length > 0 ? await this.recordedKeys(inventory) : new Set<string>();
      for (const kernel of candidates) {
        if (recorded.has(inventory.keyOf(kernel.ref))) continue;
        await backend
          .stop(kernel.ref)
          .catch((cause) => logger.warn("could not stop an orphaned kernel", { cause }));
        report.orphans++;
      }
    }
    if (this.kernels.pool) {
      const { retired, filled } = await this.kernels.pool.tend();
      report.poolRetired = retired;
      report.poolFilled = filled;
    }
    if (Object.values(report).some((n) => n > 0)) logger.info("reaper pass", { ...report });
    return report;
  }

  /**
   * Removes the abandoned uploads of a live kernel nobody used for a while (in kernels in use, each
   * file request does it): under its lease, taken without waiting and without counting as activity,
   * so it never holds up a run nor keeps an idle kernel from being reaped.
   */
  private async sweepAbandoned(record: KernelRecord): Promise<void> {
    await this.kernels
      .withLease(record.owner, record.kernelId, { workMs: SWEEP_MS, busyWaitMs: 0, touch: false }, (ref) =>
        this.kernels.helperQuietly(
          ref,
          sweepUploads(ABANDONED_UPLOAD_SECONDS, 2),
          SWEEP_MS,
          "remove abandoned uploads",
        ),
      )
      .catch(() => undefined);
  }

  /**
   * Stops every kernel of this backend in the store (the dev server on Ctrl-C), the warm pool's
   * too; returns how many were callers' kernels.
   */
  async stopAll(): Promise<number> {
    const { store, backend } = this.kernels;
    const records: KernelRecord[] = [];
    for await (const record of store.scanAll()) {
      if (record.backend === backend.name) records.push(record);
    }
    await Promise.all(
      records.map(async (record) => {
        await this.kernels.stopQuietly(record);
        await store.delete(record);
      }),
    );
    await this.kernels.pool?.drain();
    this.kernels.forgetAll();
    backend.closeKept?.();
    return records.length;
  }

  /** The inventory keys of every kernel a record of this backend points at. */
  private async recordedKeys(inventory: KernelInventory): Promise<Set<string>> {
    const keys = new Set(((await this.kernels.pool?.refs()) ?? []).map((ref) => inventory.keyOf(ref)));
    for await (const record of this.kernels.store.scanAll()) {
      const ref = record.backend === this.kernels.backend.name ? this.kernels.readableRef(record) : undefined;
      if (ref) keys.add(inventory.keyOf(ref));
    }
    return keys;
  }
}
