import type { IKernelConnection } from "@jupyterlab/services/lib/kernel/kernel.js";
import { within } from "../../async.ts";
import type { GatewaySettings } from "./api.ts";

/*
 * Kernel websockets kept open between the invocations of one warm function, so the next run on
 * the same kernel skips the websocket handshake (about half of a run's cost on a gateway). A kept
 * connection is lent to one use at a time and proven alive before it is lent again.
 */

/** How a kept connection is bounded. */
export interface ConnectionCacheOptions {
  /** Longest a connection is kept unused; 0 keeps none. */
  maxIdleMs: number;
  /** Most connections kept; the least recently used one goes first. */
  maxEntries: number;
  /** Bound on the liveness probe of a kept connection before it is lent. */
  probeTimeoutMs: number;
}

interface Kept {
  connection: IKernelConnection;
  settings: GatewaySettings;
  keptAt: number;
  timer: NodeJS.Timeout;
}

/**
 * Open `KernelConnection`s by kernel id. {@link take} hands one out exclusively (two concurrent uses
 * of a kernel get two connections) and {@link keep} takes it back; a connection is lent again only
 * while it is fresh, open, made with the current settings (a rotated token makes new ones) and
 * answers a `kernel_info_request` within the probe timeout. That probe matters after a Lambda
 * freeze: timers do not run while frozen, and a socket the gateway closed meanwhile may not have
 * said so yet. Anything else is disposed, and the caller opens a new connection.
 */
export class ConnectionCache {
  private readonly kept = new Map<string, Kept>();

  constructor(private readonly options: ConnectionCacheOptions) {}

  /** A live kept connection to `kernelId`, now the caller's alone; undefined when there is none. */
  async take(kernelId: string, settings: GatewaySettings): Promise<IKernelConnection | undefined> {
    const entry = this.kept.get(kernelId);
    if (!entry) return undefined;
    this.forget(kernelId, entry);
    const { connection } = entry;
    const usable =
      entry.settings === settings &&
      Date.now() - entry.keptAt < this.options.maxIdleMs &&
      !connection.isDisposed &&
      connection.connectionStatus === "connected" &&
      (connection.status === "idle" || connection.status === "busy");
    if (usable && (await this.answers(connection))) return connection;
    connection.dispose();
    return undefined;
  }

  /** Keeps an open connection for the next use of its kernel (disposing one kept already). */
  keep(kernelId: string, settings: GatewaySettings, connection: IKernelConnection): void {
    if (this.options.maxIdleMs <= 0 || connection.isDisposed || connection.connectionStatus !== "connected") {
      connection.dispose();
      return;
    }
    this.drop(kernelId);
    const timer = setTimeout(() => this.drop(kernelId), this.options.maxIdleMs);
    timer.unref();
    this.kept.set(kernelId, { connection, settings, keptAt: Date.now(), timer });
    for (const [oldest] of this.kept) {
      if (this.kept.size <= this.options.maxEntries) break;
      this.drop(oldest);
    }
  }

  /** Disposes the kept connection of a kernel, if any (its kernel is being stopped, say). */
  drop(kernelId: string): void {
    const entry = this.kept.get(kernelId);
    if (!entry) return;
    this.forget(kernelId, entry);
    entry.connection.dispose();
  }

  /** Disposes every kept connection. */
  clear(): void {
    for (const kernelId of [...this.kept.keys()]) this.drop(kernelId);
  }

  private forget(kernelId: string, entry: Kept): void {
    clearTimeout(entry.timer);
    this.kept.delete(kernelId);
  }

  private async answers(connection: IKernelConnection): Promise<boolean> {
    try {
      await within(connection.requestKernelInfo(), this.options.probeTimeoutMs, () => new Error("no answer"));
      return connection.connectionStatus === "connected";
    } catch {
      return false;
    }
  }
}
