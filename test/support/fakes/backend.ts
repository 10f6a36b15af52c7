import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { envOnlyPooling } from "../../../lib/backends/pool-adoption.ts";
import type {
  Backend,
  BackendName,
  HelperRequest,
  KernelInventory,
  KernelPooling,
  KernelRef,
  RunOptions,
  StartSpec,
} from "../../../lib/backends/port.ts";
import type { RunResult } from "../../../lib/core/run-result.ts";
import { BackendError, KernelDiedError, KernelStuckError } from "../../../lib/errors.ts";

/** One kernel of the fake backend, as a test inspects it. */
export interface FakeKernel {
  readonly id: string;
  readonly spec: StartSpec;
  readonly startedAt: number;
  /** `dead`: its process went away by itself; `stopped`: we stopped it. */
  status: "running" | "dead" | "stopped";
  /** Set by {@link FakeBackend.ignoreInterrupts}: its runs end in `KernelStuckError`. */
  stuck: boolean;
  /** The code each run sent to it, in order (only code that went out, not refused runs). */
  readonly ran: string[];
  /** The options each run that went out was bounded by. */
  readonly options: RunOptions[];
  /** The helper requests it was sent, in order (silent set-up and files alike). */
  readonly helpers: HelperRequest<unknown>[];
}

/** What a fake kernel answers a helper request with, before the request's schema checks it. */
export type HelperAnswer = (kernel: FakeKernel, request: HelperRequest<unknown>) => unknown;

/** How a fake backend behaves from the start. */
export interface FakeBackendOptions {
  name?: BackendName;
  /** Whether it lists its kernels for the reaper's orphan sweep (as local and cluster do). */
  inventory?: boolean;
  /**
   * Whether its kernels can be pooled: adopted with the real env-only request (a `cwd` is fixed at
   * start, as on local and cluster), naming the owner in `PYBOX_FAKE_OWNER`.
   */
  pooling?: boolean;
}

/**
 * The backend port in memory, for unit tests of the sandbox: kernels are entries in a map, a run
 * answers with its code as `text/plain`. Switches make the cases a real backend meets: a kernel
 * that died, one that ignores the interrupt, a slow or failing start, runs held mid-flight. It
 * honours `RunOptions.admitted` as the real ones do: a refused run sends nothing.
 */
export class FakeBackend implements Backend {
  readonly name: BackendName;
  readonly inventory: KernelInventory | undefined;
  readonly pooling: KernelPooling | undefined;
  /** Every kernel ever started, in order. */
  readonly kernels: FakeKernel[] = [];
  /** How long each start takes. */
  startDelayMs = 0;
  /**
   * Answers helper requests; by default `null`, what the silent set-up helpers (the kernel's root,
   * the sweep of abandoned uploads) answer. It runs no Python: tests of files set an answer that
   * stands for the kernel's. Helper requests are not held by {@link pause}.
   */
  answerHelper: HelperAnswer = () => null;
  private startFailure: Error | undefined;
  private gate: { promise: Promise<void>; open: () => void } | undefined;

  constructor(options: FakeBackendOptions = {}) {
    this.name = options.name ?? "local";
    this.inventory = options.inventory
      ? {
          list: async () =>
            this.kernels
              .filter((kernel) => kernel.status === "running")
              .map((kernel) => ({ ref: this.refTo(kernel), startedAt: kernel.startedAt })),
          keyOf: (ref) => String(ref.id),
        }
      : undefined;
    this.pooling = options.pooling
      ? envOnlyPooling(this, "fake", "the fake kernel's folder is fixed at start", {
          ownerEnv: (spec) => ({ PYBOX_FAKE_OWNER: spec.owner }),
        })
      : undefined;
  }

  parseRef(value: unknown): KernelRef {
    const ref = value as Partial<Record<string, unknown>> | null;
    if (typeof ref !== "object" || ref === null || ref.backend !== this.name || typeof ref.id !== "string") {
      throw new TypeError("not a ref of this fake backend");
    }
    return { backend: this.name, id: ref.id };
  }

  async start(spec: StartSpec): Promise<KernelRef> {
    if (this.startDelayMs > 0) await sleep(this.startDelayMs);
    const failure = this.startFailure;
    if (failure) {
      this.startFailure = undefined;
      throw failure;
    }
    const kernel: FakeKernel = {
      id: randomUUID(),
      spec: structuredClone(spec),
      startedAt: Date.now(),
      status: "running",
      stuck: false,
      ran: [],
      options: [],
      helpers: [],
    };
    this.kernels.push(kernel);
    return this.refTo(kernel);
  }

  async run(ref: KernelRef, code: string, options: RunOptions): Promise<RunResult> {
    const kernel = this.kernelAt(ref);
    if (kernel?.status !== "running") throw new KernelDiedError("the fake kernel is gone");
    // A refused admission ends the run here, with nothing sent.
    if (options.admitted) await options.admitted;
    if (this.gate) await this.gate.promise;
    if (kernel.status !== "running") throw new KernelDiedError("the fake kernel went away during the run");
    kernel.ran.push(code);
    kernel.options.push(options);
    const result: RunResult = {
      status: "ok",
      data: [{ "text/plain": code }],
      error: null,
      executionCount: kernel.ran.length,
      durationMs: 0,
      truncated: false,
      artifacts: [],
    };
    if (!kernel.stuck) return result;
    throw new KernelStuckError("the kernel did not come back from an interrupt", {
      ...result,
      status: "timeout",
      error: {
        ename: "TimeoutError",
        evalue: `execution exceeded ${options.timeoutMs} ms and was interrupted`,
        traceback: [],
      },
    });
  }

  async helper<T>(ref: KernelRef, request: HelperRequest<T>): Promise<T> {
    const kernel = this.kernelAt(ref);
    if (kernel?.status !== "running") throw new KernelDiedError("the fake kernel is gone");
    kernel.helpers.push(request);
    const answer = await this.answerHelper(kernel, request);
    if (kernel.status !== "running")
      throw new KernelDiedError("the fake kernel went away during a helper request");
    const checked = request.schema.safeParse(answer);
    if (!checked.success) {
      throw new BackendError("the fake kernel's helper answer does not fit the request; set answerHelper");
    }
    return checked.data;
  }

  async interrupt(_ref: KernelRef): Promise<void> {}

  async isAlive(ref: KernelRef): Promise<boolean> {
    return this.kernelAt(ref)?.status === "running";
  }

  async stop(ref: KernelRef): Promise<void> {
    const kernel = this.kernelAt(ref);
    if (kernel?.status === "running") kernel.status = "stopped";
  }

  /** The kernels started for the caller's kernel id, oldest first. */
  kernelsOf(owner: string, kernelId: string): FakeKernel[] {
    return this.kernels.filter((kernel) => kernel.spec.owner === owner && kernel.spec.kernelId === kernelId);
  }

  /** The kernel now running for the caller's kernel id, if any. */
  runningOf(owner: string, kernelId: string): FakeKernel | undefined {
    return this.kernelsOf(owner, kernelId).find((kernel) => kernel.status === "running");
  }

  /** The kernels running now. */
  running(): FakeKernel[] {
    return this.kernels.filter((kernel) => kernel.status === "running");
  }

  /** Kills the caller's running kernel from outside, as an OOM kill or a crash would. */
  kill(owner: string, kernelId: string): void {
    this.require(owner, kernelId).status = "dead";
  }

  /** Makes the caller's running kernel ignore interrupts: its runs end in `KernelStuckError`. */
  ignoreInterrupts(owner: string, kernelId: string): void {
    this.require(owner, kernelId).stuck = true;
  }

  /** Makes the next start fail with `error` (no capacity, the peer unreachable, …). */
  failNextStart(error: Error): void {
    this.startFailure = error;
  }

  /** Holds every run once admitted, before its code goes out, until `resume` is called. */
  pause(): { resume: () => void } {
    let open = () => {};
    const promise = new Promise<void>((resolve) => {
      open = resolve;
    });
    const gate = { promise, open };
    this.gate = gate;
    return {
      resume: () => {
        if (this.gate === gate) this.gate = undefined;
        gate.open();
      },
    };
  }

  private refTo(kernel: FakeKernel): KernelRef {
    return { backend: this.name, id: kernel.id };
  }

  private kernelAt(ref: KernelRef): FakeKernel | undefined {
    return this.kernels.find((kernel) => kernel.id === ref.id);
  }

  private require(owner: string, kernelId: string): FakeKernel {
    const kernel = this.runningOf(owner, kernelId);
    if (!kernel) throw new Error(`no running fake kernel for ${owner}/${kernelId}`);
    return kernel;
  }
}
