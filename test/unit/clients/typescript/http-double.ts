import { once } from "node:events";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

/** A request as the double received it: the raw URL path (encoding untouched) and the body's bytes. */
export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** What the double answers: a status with a JSON (or raw) body, or a connection cut before any answer. */
export type Reply =
  | { status: number; headers?: Record<string, string>; json?: unknown; raw?: Buffer | string }
  | "reset";

/** A running double: its base URL, every request it got, in order, and how to close it. */
export interface HttpDouble {
  url: string;
  port: number;
  requests: Received[];
  close(): Promise<void>;
}

/**
 * A real HTTP server on 127.0.0.1 (port 0) answering by `handler`, for driving the client over
 * real sockets: retries, resets and signatures are only honest against a real server.
 */
export async function serve(
  handler: (request: Received, index: number) => Reply | Promise<Reply>,
): Promise<HttpDouble> {
  const requests: Received[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const received: Received = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      body: Buffer.concat(chunks),
    };
    requests.push(received);
    const reply = await handler(received, requests.length - 1);
    if (reply === "reset") {
      req.socket.destroy();
      return;
    }
    const headers: Record<string, string> = { ...reply.headers };
    let body: Buffer | string = "";
    if (reply.json !== undefined) {
      body = JSON.stringify(reply.json);
      headers["content-type"] ??= "application/json";
    } else if (reply.raw !== undefined) {
      body = reply.raw;
    }
    res.writeHead(reply.status, { ...headers, "content-length": String(Buffer.byteLength(body)) });
    res.end(body);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

/** A port nothing listens on: one the system just handed out and took back. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return port;
}

/** A kernel view as the service answers it. */
export function kernelView(kernelId = "k1") {
  const now = new Date().toISOString();
  return { kernelId, backend: "local", state: "idle", createdAt: now, lastActivityAt: now };
}

/** A RunResult as the service answers it. */
export function runResult(text = "42") {
  return {
    status: "ok",
    data: [{ "text/plain": text }],
    error: null,
    executionCount: 1,
    durationMs: 3,
    truncated: false,
    artifacts: [],
  };
}

/** The service's error body. */
export function serviceError(code: string, message = `${code.toLowerCase()} for the test`) {
  return { error: { code, message } };
}
