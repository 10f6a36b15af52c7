import type { Backend } from "../backends/port.ts";
import { HostSharedError } from "../errors.ts";
import { logger } from "../logger.ts";
import type { TenancyStore } from "../store/tenancy-store.ts";

/** The tenancy write the sandbox relies on, named so a test can hand in an in-memory one. */
export type TenancyRecords = Pick<TenancyStore, "claim">;

/**
 * How long a caller admitted here is not asked about again: an operator who hands the deployment
 * to another caller (deletes the tenant item) has warm instances follow within this.
 */
const ADMISSION_MS = 60_000;

/** What an operator decided for a backend whose callers would share a host (`PYBOX_GATEWAY_SHARED_HOST`). */
export type SharedHostPolicy = "refuse" | "allow";

/**
 * Keeps callers apart where the backend cannot: when it says its kernels share one host and user
 * (a gateway running kernels as local processes), the deployment serves the first caller to start
 * a kernel and refuses the others with `HOST_SHARED`, unless the operator allowed sharing (then it
 * warns, once per process, when it first learns of it).
 */
export class HostTenancy {
  private sharing: Promise<string | undefined> | undefined;
  /** Callers admitted by this process, until when (epoch ms). */
  private readonly admitted = new Map<string, number>();

  constructor(
    private readonly records: TenancyRecords,
    private readonly backend: Pick<Backend, "name" | "sharedHost">,
    private readonly policy: SharedHostPolicy,
  ) {}

  /** Lets `owner` start kernels here, or throws {@link HostSharedError}. */
  async admit(owner: string): Promise<void> {
    if (this.policy === "allow") {
      // Every caller is let in: the answer only decides whether to warn, and never holds a start up.
      void this.sharedHost().catch(() => undefined);
      return;
    }
    if ((this.admitted.get(owner) ?? 0) > Date.now()) return;
    const reason = await this.sharedHost();
    if (reason && !(await this.records.claim(this.backend.name, owner))) {
      throw new HostSharedError(
        `this deployment serves one caller only: ${reason}, where a kernel of yours could read another caller's files. Ask its operator for a gateway that runs kernels in containers, or to allow sharing (PYBOX_GATEWAY_SHARED_HOST=allow)`,
      );
    }
    this.admitted.set(owner, Date.now() + ADMISSION_MS);
  }

  /**
   * Why callers would share a host here, or undefined. Asked once (a failed ask is asked again);
   * where the operator allowed sharing, the answer is logged as a warning, once.
   */
  sharedHost(): Promise<string | undefined> {
    if (!this.backend.sharedHost) return Promise.resolve(undefined);
    this.sharing ??= this.backend.sharedHost().then(
      (reason) => {
        if (reason && this.policy === "allow") {
          logger.warn(
            `kernels of different callers share one host: ${reason}, so one caller's code can read another's files; PYBOX_GATEWAY_SHARED_HOST=allow lets them`,
          );
        }
        return reason;
      },
      (error: unknown) => {
        this.sharing = undefined;
        throw error;
      },
    );
    return this.sharing;
  }
}
