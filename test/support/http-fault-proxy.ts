import { once } from "node:events";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** What the double does to a request a test selected. */
export type HttpFault =
  /** Answers `status` with `body` (JSON) instead of forwarding; a websocket upgrade is refused with it. */
  | { kind: "status"; status: number; body?: unknown }
  /** Forwards at once but holds the peer's answer (or the websocket's opening) for `ms`. */
  | { kind: "delay"; ms: number }
  /** Destroys the connection without an answer. */
  | { kind: "reset" };

/** One request as the double saw it. */
export interface SeenHttpRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  /** A websocket upgrade (a kernel channel), as opposed to a REST call. */
  upgrade: boolean;
  /** The fault applied to it, or undefined when it was forwarded untouched. */
  fault?: HttpFault["kind"];
  at: number;
}

/** Which requests a fault applies to and how many. */
export interface HttpFaultOptions {
  /** How many selected requests get the fault (default: all, until {@link HttpFaultProxy.heal}). */
  count?: number;
  /** Selects the requests that get the fault (default: every request, websocket upgrades included). */
  when?: (request: SeenHttpRequest) => boolean;
}

/** A running HTTP fault proxy. */
export interface HttpFaultProxy {
  /** The base URL to give the product instead of the peer's. */
  url: string;
  /** Every request received, in order. */
  readonly requests: SeenHttpRequest[];
  /** From now on, selected requests get `fault` (replaces any earlier fault). */
  inject(fault: HttpFault, options?: HttpFaultOptions): void;
  /** Forwards everything again. */
  heal(): void;
  /** Cuts every open websocket abruptly, as a network failure or a restarting proxy would. */
  dropWebsockets(): void;
  /** How many websockets are open through the double now. */
  openWebsockets(): number;
  /** Closes the listening port and every connection: the peer is unreachable (connection refused). */
  goDown(): Promise<void>;
  /** Listens again on the same port. */
  comeBack(): Promise<void>;
  /** Stops the double. */
  close(): Promise<void>;
}

const REASONS: Record<number, string> = {
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/**
 * A **double** of the network path to an HTTP peer (a Jupyter gateway), for fault-injection tests:
 * a reverse proxy in front of the real peer that forwards REST calls and websocket upgrades
 * unchanged, except those a test selects. It injects: error answers of any status and body (a
 * gateway's 5xx, or a load balancer's 502/503 in front of it), slowness (the peer's answer held
 * back), connection resets, websockets cut mid-stream, and a closed port (`goDown`). It records
 * every request's method, path and whether it was a websocket. Always closed by the test that
 * started it.
 */
export async function startHttpFaultProxy(target: string): Promise<HttpFaultProxy> {
  const upstream = new URL(target);
  const requests: SeenHttpRequest[] = [];
  const sockets = new Set<Socket>();
  const tunnels = new Set<Socket>();
  let fault: { fault: HttpFault; options: HttpFaultOptions; left: number } | undefined;

  const select = (req: IncomingMessage, upgrade: boolean): { seen: SeenHttpRequest; fault?: HttpFault } => {
    const seen: SeenHttpRequest = {
      method: req.method ?? "GET",
      path: new URL(req.url ?? "/", "http://double.invalid").pathname,
      upgrade,
      at: Date.now(),
    };
    requests.push(seen);
    if (!fault || fault.left <= 0 || !(fault.options.when?.(seen) ?? true)) return { seen };
    fault.left -= 1;
    seen.fault = fault.fault.kind;
    return { seen, fault: fault.fault };
  };

  const server: Server = createServer((req, res) => {
    const { fault: injected } = select(req, false);
    if (injected?.kind === "status") {
      req.resume();
      res.writeHead(injected.status, { "content-type": "application/json" });
      res.end(JSON.stringify(injected.body ?? { reason: REASONS[injected.status] ?? "Error", message: "" }));
      return;
    }
    if (injected?.kind === "reset") {
      req.resume();
      req.socket.destroy();
      return;
    }
    forward(req, res, injected?.kind === "delay" ? injected.ms : 0);
  });

  const forward = (req: IncomingMessage, res: ServerResponse, delayMs: number) => {
    const out = request(
      {
        hostname: upstream.hostname,
        port: upstream.port,
        path: req.url,
        method: req.method,
        headers: { ...req.headers, host: upstream.host },
      },
      (answer) => {
        const relay = () => {
          if (res.destroyed) {
            answer.resume();
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        };
        if (delayMs > 0) void sleep(delayMs).then(relay);
        else relay();
      },
    );
    out.on("error", () => res.destroy());
    req.pipe(out);
  };

  server.on("upgrade", (req: IncomingMessage, client: Socket, head: Buffer) => {
    const { fault: injected } = select(req, true);
    if (injected?.kind === "status") {
      const body = JSON.stringify(injected.body ?? { reason: REASONS[injected.status] ?? "Error" });
      client.end(
        `HTTP/1.1 ${injected.status} ${REASONS[injected.status] ?? "Error"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    if (injected?.kind === "reset") {
      client.destroy();
      return;
    }
    const open = () => {
      if (client.destroyed) return;
      const peer = connect(Number(upstream.port), upstream.hostname, () => {
        const lines = [`${req.method} ${req.url} HTTP/1.1`];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
          const name = req.rawHeaders[i] ?? "";
          lines.push(`${name}: ${name.toLowerCase() === "host" ? upstream.host : req.rawHeaders[i + 1]}`);
        }
        peer.write(`${lines.join("\r\n")}\r\n\r\n`);
        if (head.length > 0) peer.write(head);
        peer.pipe(client);
        client.pipe(peer);
      });
      tunnels.add(client);
      const end = () => {
        tunnels.delete(client);
        peer.destroy();
        client.destroy();
      };
      peer.on("error", end);
      peer.on("close", end);
      client.on("error", end);
      client.on("close", end);
    };
    if (injected?.kind === "delay") void sleep(injected.ms).then(open);
    else open();
  });

  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  const closeListener = async () => {
    for (const socket of [...sockets, ...tunnels]) socket.destroy();
    if (!server.listening) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    inject(injected, options = {}) {
      fault = { fault: injected, options, left: options.count ?? Number.POSITIVE_INFINITY };
    },
    heal() {
      fault = undefined;
    },
    dropWebsockets() {
      for (const socket of [...tunnels]) socket.destroy();
    },
    openWebsockets: () => tunnels.size,
    goDown: closeListener,
    async comeBack() {
      server.listen(port, "127.0.0.1");
      await once(server, "listening");
    },
    close: closeListener,
  };
}
