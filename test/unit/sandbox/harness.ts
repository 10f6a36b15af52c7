import { Housekeeping } from "../../../lib/sandbox/housekeeping.ts";
import { KernelAccess, type SandboxSettings } from "../../../lib/sandbox/kernel-access.ts";
import { KernelLifecycle } from "../../../lib/sandbox/lifecycle.ts";
import { KernelRuns } from "../../../lib/sandbox/runs.ts";
import { FakeBackend, type FakeBackendOptions } from "../../support/fakes/backend.ts";
import { FakeKernelStore } from "../../support/fakes/kernel-store.ts";

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
export function sandbox(options: { settings?: Partial<SandboxSettings>; backend?: FakeBackendOptions } = {}) {
  const store = new FakeKernelStore();
  const backend = new FakeBackend(options.backend);
  const kernels = new KernelAccess(store, backend, testSettings(options.settings));
  return {
    store,
    backend,
    kernels,
    lifecycle: new KernelLifecycle(kernels),
    runs: new KernelRuns(kernels),
    housekeeping: new Housekeeping(kernels),
  };
}

/** An instant this long before now, as the store writes them. */
export function ago(ms: number): string {
  return new Date(Date.now() - ms).toISOString();
}
