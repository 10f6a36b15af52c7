import { isUtf8 } from "node:buffer";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { HTTP_INVOCATION_TIMEOUT_MS } from "../config.ts";
import {
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PortInUseError,
  UnauthenticatedError,
  ValidationError,
} from "../errors.ts";
import { errorResponse } from "../http/error-handler.ts";
import type { HttpLambda } from "../http/handler.ts";
import { openApiDocument } from "../http/openapi.ts";
import { json } from "../http/responses.ts";
import { ROUTES, type Route, type RouteFunction } from "../http/routes.ts";
import { type EventSink, type StreamRequest, wantsEventStream } from "../http/run-stream.ts";
import { lambdaContext } from "./lambda-context.ts";

/** Where the dev server serves the API's OpenAPI document (not a route of the deployed API). */
const OPENAPI_PATH = "/openapi.json";

/** API Gateway's own cap on a request payload. */
const MAX_REQUEST_BYTES = 10 * 1024 * 1024;

interface CompiledRoute {
  operationId: Route["operationId"];
  method: string;
  routeKey: string;
  pattern: RegExp;
  names: string[];
  function: RouteFunction;
}

/** How the dev server answers a run asked for as Server-Sent Events (see `lib/http/run-stream.ts`). */
export type StreamHandler = (request: StreamRequest, sink: EventSink) => Promise<void>;

/** A running local API. */
export interface DevServer {
  url: string;
  /** The `METHOD /path` keys it routes, as API Gateway names them. */
  routeKeys: readonly string[];
  /** Stops accepting requests, lets those under way finish, then closes every connection. */
  close(): Promise<void>;
}

/**
 * Serves the HTTP API on loopback the way API Gateway would: each request becomes a payload 2.0
 * event for the same Lambda handler, with the bearer token's text as the caller (none → `local`).
 */
export async function startDevServer(
  handlers: Record<RouteFunction, HttpLambda>,
  options: { port: number; host?: string; stream?: StreamHandler },
): Promise<DevServer> {
  const routes = ROUTES.map(compile);
  const inFlight = new Set<Promise<void>>();
  const server: Server = createServer((req, res) => {
    const handling = serve(req, res, routes, handlers, options.stream).catch((error: unknown) =>
      send(res, errorResponse(error)),
    );
    inFlight.add(handling);
    void handling.finally(() => inFlight.delete(handling));
  });
  server.keepAliveTimeout = 60_000;
  server.listen(options.port, options.host ?? "127.0.0.1");
  try {
    await once(server, "listening");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE")
      throw new PortInUseError(options.port, { cause: error });
    throw error;
  }
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    routeKeys: routes.map((route) => route.routeKey),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Requests under way finish first, so a start in flight cannot leave a kernel behind.
      await Promise.allSettled([...inFlight]);
      server.closeAllConnections();
      await closed;
    },
  };
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  routes: CompiledRoute[],
  handlers: Record<RouteFunction, HttpLambda>,
  stream: StreamHandler | undefined,
): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  // The path as sent, not as WHATWG URL normalises it (`..` and `%2e%2e` folded away): API
  // Gateway hands the function the raw path, and the file routes check exactly what was sent.
  const rawPath = (req.url ?? "/").split("?")[0] ?? "/";
  const method = req.method ?? "GET";
  if (url.pathname === OPENAPI_PATH) {
    if (method !== "GET")
      throw new MethodNotAllowedError(`${method} is not allowed on ${url.pathname}`, ["GET"]);
    send(res, json(200, openApiDocument()));
    return;
  }
  const matches = routes
    .map((route) => ({ route, match: route.pattern.exec(rawPath) }))
    .filter((m) => m.match !== null);
  if (matches.length === 0) throw new NotFoundError(`no route for ${method} ${rawPath}`);
  const hit = matches.find((m) => m.route.method === method);
  if (!hit?.match) {
    const allow = matches.map((m) => m.route.method);
    throw new MethodNotAllowedError(`${method} is not allowed on ${rawPath}`, allow);
  }
  const body = await readBody(req);
  const event = toEvent(req, url, rawPath, hit.route, pathParameters(hit.route, hit.match), body);
  if (stream && hit.route.operationId === "run" && wantsEventStream(event.headers)) {
    await stream(event, responseSink(res));
    return;
  }
  const response = await handlers[hit.route.function](
    event,
    lambdaContext(hit.route.function, HTTP_INVOCATION_TIMEOUT_MS),
  );
  send(res, response);
}

/** A streamed run's Node response as the sink it writes to; `gone` when the client hangs up first. */
function responseSink(res: ServerResponse): EventSink {
  const hangUp = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) hangUp.abort();
  });
  return {
    head: (status, headers) => {
      res.writeHead(status, headers);
      res.flushHeaders();
    },
    write: (chunk) => {
      res.write(chunk);
    },
    end: () => {
      res.end();
    },
    gone: hangUp.signal,
  };
}

function toEvent(
  req: IncomingMessage,
  url: URL,
  rawPath: string,
  route: CompiledRoute,
  pathParameters: Record<string, string>,
  body: Buffer,
): APIGatewayProxyEventV2 {
  const headers: Record<string, string> = {};
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[key] = Array.isArray(value) ? value.join(",") : value;
  }
  const now = new Date();
  const event = {
    version: "2.0",
    routeKey: route.routeKey,
    rawPath,
    rawQueryString: url.search.slice(1),
    headers,
    queryStringParameters: Object.fromEntries(url.searchParams),
    pathParameters,
    // As API Gateway does: text stays text, anything else (a file's bytes) comes base64-encoded.
    ...(body.length === 0
      ? { isBase64Encoded: false }
      : isText(headers["content-type"], body)
        ? { body: body.toString("utf8"), isBase64Encoded: false }
        : { body: body.toString("base64"), isBase64Encoded: true }),
    requestContext: {
      accountId: "local",
      apiId: "local",
      domainName: headers.host ?? "127.0.0.1",
      domainPrefix: "local",
      http: {
        method: route.method,
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp: req.socket.remoteAddress ?? "127.0.0.1",
        userAgent: headers["user-agent"] ?? "",
      },
      requestId: randomUUID(),
      routeKey: route.routeKey,
      stage: "$default",
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
      authorizer: { lambda: { principalId: callerOf(headers.authorization) } },
    },
  };
  return event as APIGatewayProxyEventV2;
}

/** A body API Gateway would pass as text: a JSON or text type (or none), valid UTF-8. */
function isText(contentType: string | undefined, body: Buffer): boolean {
  const type = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const textual =
    type === "" ||
    type.startsWith("text/") ||
    type.endsWith("json") ||
    type.endsWith("+json") ||
    type === "application/x-www-form-urlencoded";
  return textual && isUtf8(body);
}

/** Dev identity: `Authorization: Bearer <caller>`; no header is the caller `local`. */
function callerOf(authorization: string | undefined): string {
  if (authorization === undefined) return "local";
  const match = /^Bearer\s+(\S.*)$/i.exec(authorization.trim());
  if (!match?.[1]) throw new UnauthenticatedError("Authorization must be 'Bearer <caller id>'");
  return match[1].trim();
}

function compile(route: Route): CompiledRoute {
  const names: string[] = [];
  // `{name}` is one segment; `{name+}` (greedy, as API Gateway spells it) the rest of the path.
  const source = route.path.replace(/\{(\w+)(\+?)\}/g, (_, name: string, greedy: string) => {
    names.push(name);
    return greedy ? "(.+)" : "([^/]+)";
  });
  return {
    operationId: route.operationId,
    method: route.method,
    routeKey: `${route.method} ${route.path}`,
    pattern: new RegExp(`^${source}/?$`),
    names,
    function: route.function,
  };
}

function pathParameters(route: CompiledRoute, match: RegExpExecArray): Record<string, string> {
  const params: Record<string, string> = {};
  route.names.forEach((name, i) => {
    try {
      params[name] = decodeURIComponent(match[i + 1] ?? "");
    } catch {
      throw new ValidationError(`path parameter ${name} is not valid percent-encoding`);
    }
  });
  return params;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES)
      throw new PayloadTooLargeError(`request body exceeds ${MAX_REQUEST_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function send(res: ServerResponse, response: APIGatewayProxyStructuredResultV2): void {
  if (res.headersSent) return;
  const headers = Object.fromEntries(Object.entries(response.headers ?? {}).map(([k, v]) => [k, String(v)]));
  res.writeHead(response.statusCode ?? 200, headers);
  const body = response.body ?? "";
  res.end(response.isBase64Encoded ? Buffer.from(body, "base64") : body);
}
