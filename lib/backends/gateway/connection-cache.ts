import type { IKernelConnection } from "@jupyterlab/services/lib/kernel/kernel.js";
import { within } from "../../async.ts";
import { KeptConnections } from "../../kept-connections.ts";

/**
 * Gateway kernels' websockets kept between runs (see `lib/kept-connections.ts`), by kernel id and
 * lent only with the settings they were made with, so a rotated token makes new ones. The probe is
 * a `kernel_info_request`: the websocket, the gateway and the kernel's channels all answer it.
 */
export function gatewayConnections(options: {
  maxIdleMs: number;
  maxEntries: number;
  probeTimeoutMs: number;
}): KeptConnections<IKernelConnection> {
  return new KeptConnections<IKernelConnection>({
    maxIdleMs: options.maxIdleMs,
    maxEntries: options.maxEntries,
    isOpen: (connection) =>
      !connection.isDisposed &&
      connection.connectionStatus === "connected" &&
      (connection.status === "idle" || connection.status === "busy"),
    probe: async (connection) => {
      await within(connection.requestKernelInfo(), options.probeTimeoutMs, () => new Error("no answer"));
      return connection.connectionStatus === "connected";
    },
    dispose: (connection) => connection.dispose(),
  });
}
