import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What the double does to a request a test selected, instead of forwarding it. */
export type DynamoFault =
  /** HTTP 400 with DynamoDB's own throttling error body (`ProvisionedThroughputExceededException` by default). */
  | {
      kind: "throttle";
      type?: "ProvisionedThroughputExceededException" | "ThrottlingException";
    }
  /** HTTP 500 `InternalServerError`, as DynamoDB answers a failure on its side. */
  | { kind: "internal-error" }
  /** The connection is destroyed without an answer (a reset, a load balancer dropping it). */
  | { kind: "reset" }
  /** The request is read and never answered (a black-holed network path). */
  | { kind: "hang" };

/** One request as the double saw it. */
export interface SeenDynamoRequest {
  /** The DynamoDB operation, from `X-Amz-Target` (`GetItem`, `UpdateItem`, …). */
  operation: string;
  /** The request's JSON body (table, key, expressions, values). */
  body: Record<string, unknown>;
  /** The SDK's attempt number for this call (from `amz-sdk-request: attempt=N; max=M`); 0 if absent. */
  attempt: number;
  /** The SDK's most attempts for one call; 0 if absent. */
  maxAttempts: number;
  /** The fault applied to it, or undefined when it was forwarded. */
  fault?: DynamoFault["kind"];
  at: number;
}

/** Which requests a fault applies to, how many, and what else happens when it does. */
export interface DynamoFaultOptions {
  /** How many selected requests get the fault (default: all, until {@link DynamoFaultProxy.heal}). */
  count?: number;
  /** Selects the requests that get the fault (default: every request). */
  when?: (request: SeenDynamoRequest) => boolean;
  /** Called with each request the fault is applied to, before it is applied (e.g. to crash a process then). */
  onFault?: (request: SeenDynamoRequest) => void;
}

/** A running DynamoDB fault proxy. */
export interface DynamoFaultProxy {
  /** The endpoint to give the product instead of the emulator's. */
  url: string;
  /** Every request received, in order. */
  readonly requests: SeenDynamoRequest[];
  /** From now on, selected requests get `fault` instead of being forwarded (replaces any earlier fault). */
  inject(fault: DynamoFault, options?: DynamoFaultOptions): void;
  /** Forwards everything again. Requests already hanging stay hung (their clients time out). */
  heal(): void;
  /** Closes the listening port and every connection: DynamoDB is unreachable (connection refused). */
  goDown(): Promise<void>;
  /** Listens again on the same port. */
  comeBack(): Promise<void>;
  /** Stops the double, ending hung requests and open connections. */
  close(): Promise<void>;
}

const THROTTLE_MESSAGES = {
  ProvisionedThroughputExceededException:
    "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
  ThrottlingException: "Throughput exceeds the current capacity for one or more global secondary indexes.",
} as const;

/**
 * A **double** of the network path to DynamoDB, for fault-injection tests: an HTTP proxy in front of
 * a real DynamoDB API (the dynalite emulator) that forwards every request unchanged, except those a
 * test selects, which it answers the way DynamoDB or a broken network would. It injects: throttling
 * (HTTP 400 with DynamoDB's `ProvisionedThroughputExceededException` or `ThrottlingException` JSON
 * body, exactly as the service sends it), server errors (HTTP 500 `InternalServerError`),
 * connection resets, requests that never get an answer, and a closed port (`goDown`). It records
 * each request's operation, body and the SDK's attempt number, so a test can see the SDK retrying.
 * Always closed by the test that started it.
 */
export async function startDynamoFaultProxy(target: string): Promise<DynamoFaultProxy> {
  const upstream = new URL(target);
  const requests: SeenDynamoRequest[] = [];
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();
  let fault: { fault: DynamoFault; options: DynamoFaultOptions; left: number } | undefined;

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer) => {
    let body: Record<string, unknown> = {};
    try {
      body = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
    } catch {
      // not JSON: forwarded as it is
    }
    const sdk = /attempt=(\d+);\s*max=(\d+)/.exec(String(req.headers["amz-sdk-request"] ?? ""));
    const seen: SeenDynamoRequest = {
      operation: String(req.headers["x-amz-target"] ?? "").replace(/^DynamoDB_\d+\./, ""),
      body,
      attempt: Number(sdk?.[1] ?? 0),
      maxAttempts: Number(sdk?.[2] ?? 0),
      at: Date.now(),
    };
    requests.push(seen);
    if (fault && fault.left > 0 && (fault.options.when?.(seen) ?? true)) {
      fault.left -= 1;
      seen.fault = fault.fault.kind;
      fault.options.onFault?.(seen);
      apply(fault.fault, res);
      return;
    }
    const forwarded = request(
      {
        hostname: upstream.hostname,
        port: upstream.port,
        path: req.url,
        method: req.method,
        headers: { ...req.headers, host: upstream.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forwarded.on("error", () => res.destroy());
    forwarded.end(raw);
  };

  const apply = (injected: DynamoFault, res: ServerResponse) => {
    switch (injected.kind) {
      case "throttle": {
        const type = injected.type ?? "ProvisionedThroughputExceededException";
        const namespace = "com.amazonaws.dynamodb.v20120810";
        answer(res, 400, { __type: `${namespace}#${type}`, message: THROTTLE_MESSAGES[type] });
        return;
      }
      case "internal-error":
        answer(res, 500, {
          __type: "com.amazonaws.dynamodb.v20120810#InternalServerError",
          message: "Internal server error",
        });
        return;
      case "reset":
        res.socket?.destroy();
        return;
      case "hang":
        hung.add(res);
        res.on("close", () => hung.delete(res));
        return;
    }
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => handle(req, res, Buffer.concat(chunks)));
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;

  const closeListener = async () => {
    for (const res of hung) res.destroy();
    for (const socket of sockets) socket.destroy();
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
    goDown: closeListener,
    async comeBack() {
      server.listen(port, "127.0.0.1");
      await once(server, "listening");
    },
    close: closeListener,
  };
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.0",
    "x-amzn-requestid": randomUUID().replaceAll("-", "").toUpperCase(),
  });
  res.end(JSON.stringify(body));
}
