import { Housekeeping } from "../../../lib/sandbox/housekeeping.ts";
import { KernelAccess, type SandboxSettings } from "../../../lib/sandbox/kernel-access.ts";
import { KernelLifecycle } from "../../../lib/sandbox/lifecycle.ts";
import { KernelRuns } from "../../../lib/sandbox/runs.ts";
import { WarmPool } from "../../../lib/sandbox/warm-pool.ts";
import { FakeBackend, type FakeBackendOptions } from "../../support/fakes/backend.ts";
import { FakeKernelStore } from "../../support/fakes/kernel-store.ts";
import { FakePoolStore } from "../../support/fakes/pool-store.ts";

/** Settings small enough for unit tests: short waits, a small code limit. */
export function testSettings(change: Partial<SandboxSettings> = {}): SandboxSettings {
  return {
    operatorEnv: { OPERATOR_ONLY: "operator", SHARED: "operator" },
    startTimeoutMs: 5_000,
    maxKernelsPerCaller: 10,
    files: { maxFileBytes: 1_000_000 },
    ...change,
    run: {
      defaultTimeoutMs: 5_000,
      maxTimeoutMs: 25_000,
      interruptGraceMs: 100,
      busyWaitMs: 5_000,
      maxCodeBytes: 1_000,
      maxOutputBytes: 100_000,
      maxOutputEntryBytes: 50_000,
      ...change.run,
    },
  };
}

/** The three rooms of the sandbox over one in-memory store and one fake backend, as the facade wires them. */
export function sandbox(
  options: {
    settings?: Partial<SandboxSettings>;
    backend?: FakeBackendOptions;
    /** A warm pool of this size and age limit (default age: an hour), over an in-memory pool store. */
    pool?: { size: number; maxAgeMs?: number };
  } = {},
) {
  const store = new FakeKernelStore();
  const backend = new FakeBackend(options.backend);
  const settings = testSettings(options.settings);
  const pools = new FakePoolStore();
  const refills: number[] = [];
  const pool = options.pool
    ? new WarmPool(
        pools,
        backend,
        { pool: { maxAgeMs: 3_600_000, ...options.pool }, operatorEnv: settings.operatorEnv },
        async () => {
          refills.push(Date.now());
        },
      )
    : undefined;
  const kernels = new KernelAccess(store, backend, settings, pool);
  return {
    store,
    backend,
    kernels,
    pool,
    pools,
    /** When each refill was asked for. */
    refills,
    lifecycle: new KernelLifecycle(kernels),
    runs: new KernelRuns(kernels),
    housekeeping: new Housekeeping(kernels),
  };
}

/** An instant this long before now, as the store writes them. */
export function ago(ms: number): string {
  return new Date(Date.now() - ms).toISOString();
}
