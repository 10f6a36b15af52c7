import { KernelMessage } from "@jupyterlab/services";
import type { IKernelConnection } from "@jupyterlab/services/lib/kernel/kernel.js";
import { within } from "../../async.ts";
import { KeptConnections } from "../../kept-connections.ts";

/**
 * Gateway kernels' websockets kept between runs (see `lib/kept-connections.ts`), by kernel id and
 * lent only with the settings they were made with, so a rotated token makes new ones. The probe is
 * a `kernel_info_request` on the control channel: the websocket, the gateway and the kernel all
 * answer it, even while a cell of another instance keeps the shell channel busy.
 */
export function gatewayConnections(options: {
  maxIdleMs: number;
  probeTimeoutMs: number;
}): KeptConnections<IKernelConnection> {
  return new KeptConnections<IKernelConnection>({
    maxIdleMs: options.maxIdleMs,
    isOpen: (connection) =>
      !connection.isDisposed &&
      connection.connectionStatus === "connected" &&
      (connection.status === "idle" || connection.status === "busy"),
    probe: async (connection) => {
      const future = connection.sendControlMessage(controlKernelInfo(connection), true, true);
      try {
        await within(future.done, options.probeTimeoutMs, () => new Error("no answer"));
      } finally {
        future.dispose();
      }
      return connection.connectionStatus === "connected";
    },
    dispose: (connection) => connection.dispose(),
  });
}

/**
 * A `kernel_info_request` for the control channel. ipykernel serves it there on its own thread;
 * `@jupyterlab/services` types list it for shell only, hence the one cast.
 */
function controlKernelInfo(connection: IKernelConnection): KernelMessage.IControlMessage {
  const message = KernelMessage.createMessage({
    msgType: "kernel_info_request",
    channel: "shell",
    session: connection.clientId,
    username: connection.username,
    content: {},
  });
  return { ...message, channel: "control" } as unknown as KernelMessage.IControlMessage;
}
