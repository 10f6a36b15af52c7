import { KeptConnections } from "../kept-connections.ts";
import { type ClientOptions, KernelClient } from "./client.ts";
import type { ConnectionInfo } from "./connection.ts";

/** Bound on the heartbeat that proves a kept client's kernel still answers before it is reused. */
const PROBE_TIMEOUT_MS = 500;

/** One kernel incarnation: its address and its key, which a relaunched kernel never shares. */
function keyOf(info: ConnectionInfo): string {
  return `${info.transport}:${info.ip}:${info.shell_port}:${info.key}`;
}

/**
 * ZeroMQ clients of the local and cluster backends, kept between the runs of a warm instance for
 * `maxIdleMs` (0 keeps none; see `lib/kept-connections.ts`) and proven alive by one heartbeat
 * before reuse. A reused client needs no connecting and no handshake.
 */
export class KernelClients {
  private readonly kept: KeptConnections<KernelClient>;

  constructor(maxIdleMs: number) {
    this.kept = new KeptConnections<KernelClient>({
      maxIdleMs,
      isOpen: (client) => client.isOpen,
      probe: (client) => client.ping(PROBE_TIMEOUT_MS),
      dispose: (client) => client.close(),
    });
  }

  /**
   * Does `use` with a kept client of the kernel, or a new one; a use that succeeds keeps the client
   * for the next, one that fails closes it. A run that must wait for `admitted` (the kernel's
   * lease) while another run here uses the kernel waits for that run's client rather than opening
   * one: it comes back when that run ends, which is when the lease does.
   */
  async use<T>(
    info: ConnectionInfo,
    use: (client: KernelClient) => Promise<T>,
    options?: ClientOptions & { admitted?: Promise<unknown> | undefined },
  ): Promise<T> {
    const { admitted, ...clientOptions } = options ?? {};
    const key = keyOf(info);
    let client = await this.kept.take(key);
    if (!client && admitted && this.kept.inUse(key)) {
      await admitted.catch(() => undefined);
      client = await this.kept.take(key);
    }
    client ??= new KernelClient(info, clientOptions);
    const done = this.kept.using(key);
    let succeeded = false;
    try {
      const value = await use(client);
      succeeded = true;
      return value;
    } finally {
      done();
      if (succeeded) this.kept.keep(key, client);
      else client.close();
    }
  }

  /** Closes the kept client of a kernel that is being stopped. */
  drop(info: ConnectionInfo): void {
    this.kept.drop(keyOf(info));
  }

  /** Closes every kept client (their sockets would keep a process that is done running). */
  clear(): void {
    this.kept.clear();
  }
}
