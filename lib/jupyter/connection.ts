import * as z from "zod";

/**
 * The kernel's connection file, as ipykernel writes it and as the cluster controller annotates it.
 * Validated wherever it enters (a file, a DynamoDB item, a pod annotation): the key in it is what
 * makes every message we accept authentic.
 */
export const ConnectionInfoSchema = z.object({
  transport: z.enum(["tcp", "ipc"]).default("tcp"),
  ip: z.string().min(1),
  shell_port: z.number().int().min(0).max(65535),
  iopub_port: z.number().int().min(0).max(65535),
  stdin_port: z.number().int().min(0).max(65535),
  control_port: z.number().int().min(0).max(65535),
  hb_port: z.number().int().min(0).max(65535),
  key: z.string().min(1),
  signature_scheme: z.literal("hmac-sha256").default("hmac-sha256"),
  kernel_name: z.string().optional(),
});

/** Where and how to reach one kernel's five sockets. */
export type ConnectionInfo = z.infer<typeof ConnectionInfoSchema>;

/** The five Jupyter channels. */
export type Channel = "shell" | "iopub" | "stdin" | "control" | "hb";

/** The ZeroMQ endpoint of one channel, following jupyter_client's `ipc://{ip}-{port}` convention. */
export function channelUrl(info: ConnectionInfo, channel: Channel): string {
  const port = info[`${channel}_port`];
  return info.transport === "ipc" ? `ipc://${info.ip}-${port}` : `tcp://${formatHost(info.ip)}:${port}`;
}

/** True once every port is bound (a kernel told to pick its own ports rewrites the file with them). */
export function hasAllPorts(info: ConnectionInfo): boolean {
  return (
    info.shell_port > 0 &&
    info.iopub_port > 0 &&
    info.stdin_port > 0 &&
    info.control_port > 0 &&
    info.hb_port > 0
  );
}

function formatHost(ip: string): string {
  return ip.includes(":") && !ip.startsWith("[") ? `[${ip}]` : ip;
}
