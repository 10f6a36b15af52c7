import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import type * as z from "zod";
import { NotFoundError, PayloadTooLargeError, ValidationError } from "../errors.ts";
import { logger } from "../logger.ts";
import { publishMetrics } from "../metrics.ts";
import { errorResponse, httpErrorHandler } from "./error-handler.ts";
import { callerOf } from "./identity.ts";
import type { HttpRequest, RouteSpec, RuntimeKind, RuntimeOf } from "./route-spec.ts";
import { type Route, type RouteFunction, routesOf } from "./routes.ts";

/** What a route declares: its schemas and the one service call it makes. */
export interface RouteDefinition<P extends z.ZodType, B extends z.ZodType, Q extends z.ZodType = z.ZodType> {
  params?: P;
  body?: B;
  query?: Q;
  /** The body is bytes, not JSON: handed over as `request.bytes`, at most `maxBodyBytes`. */
  binaryBody?: boolean;
  /** Largest body accepted before parsing; bigger is a 413 before any kernel work. */
  maxBodyBytes?: number;
  /** Whether the metrics the request recorded are written (`Config.metrics`); default dropped. */
  metrics?: boolean;
  handle: (
    request: HttpRequest<z.infer<P>, z.infer<B>, z.infer<Q>>,
  ) => Promise<APIGatewayProxyStructuredResultV2>;
}

/** The Lambda signature of an HTTP API (payload 2.0) function. */
export type HttpLambda = (
  event: APIGatewayProxyEventV2,
  context: Context,
) => Promise<APIGatewayProxyStructuredResultV2>;

const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

/** An absent body (validated as `{}`), as distinct from a JSON `null` (which is invalid). */
const NO_BODY = Symbol("no body");

/**
 * Builds an HTTP API function: caller identity, body size, JSON parsing and zod validation at the
 * edge, then the route's handler; every failure goes through the one error middleware.
 */
export function httpHandler<P extends z.ZodType, B extends z.ZodType, Q extends z.ZodType = z.ZodType>(
  route: RouteDefinition<P, B, Q>,
): HttpLambda {
  const fn = middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(publishMetrics(route.metrics ?? false))
    .use(httpErrorHandler())
    .handler(async (event, context) => {
      const owner = callerOf(event.requestContext);
      const params = route.params ? validate(route.params, event.pathParameters ?? {}, "path") : undefined;
      const query = route.query
        ? validate(route.query, event.queryStringParameters ?? {}, "query")
        : undefined;
      const maxBodyBytes = route.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
      const bytes = route.binaryBody ? readBinaryBody(event, maxBodyBytes) : undefined;
      const raw = route.body ? readJsonBody(event, maxBodyBytes) : undefined;
      const body = route.body ? validate(route.body, raw === NO_BODY ? {} : raw, "body") : undefined;
      // Every later line of this request names the kernel (injectLambdaContext resets it after).
      const kernelId = kernelIdOf(params) ?? kernelIdOf(body);
      if (kernelId !== undefined) logger.appendKeys({ kernelId });
      return route.handle({
        owner,
        params: params as z.infer<P>,
        body: body as z.infer<B>,
        query: query as z.infer<Q>,
        ...(bytes ? { bytes } : {}),
        headers: event.headers ?? {},
        rawPath: event.rawPath,
        context,
      });
    });
  return (event, context) => fn(event, context) as Promise<APIGatewayProxyStructuredResultV2>;
}

/**
 * The Lambda handler of one catalogue route, served with the runtime its entry file (or the dev
 * server, or a test) built: the runtime is handed in, never looked up.
 */
export function httpFunction<
  K extends RuntimeKind,
  P extends z.ZodObject | undefined,
  B extends z.ZodType | undefined,
  Q extends z.ZodObject | undefined,
>(spec: RouteSpec<K, P, B, Q>, runtime: RuntimeOf[K]): HttpLambda {
  return httpHandler({
    ...(spec.params ? { params: spec.params } : {}),
    ...(spec.body ? { body: spec.body } : {}),
    ...(spec.query ? { query: spec.query } : {}),
    ...(spec.binaryBody ? { binaryBody: true } : {}),
    ...(spec.maxBodyBytes ? { maxBodyBytes: spec.maxBodyBytes(runtime.config) } : {}),
    metrics: runtime.config.metrics,
    handle: (request) => spec.handle(runtime, request as Parameters<typeof spec.handle>[1]),
  });
}

/** The runtime a function's routes need: a backend when any of them does. */
export type RuntimeFor<F extends RouteFunction> = RuntimeOf[Extract<Route, { function: F }>["runtime"]];

/**
 * The Lambda handler of one function: each of its catalogue routes served with the runtime handed
 * in, the route picked by the event's `routeKey` (as API Gateway names it, `PUT /kernels/{kernelId}/files/{path+}`).
 */
export function httpFunctionOf<F extends RouteFunction>(name: F, runtime: RuntimeFor<F>): HttpLambda {
  const byKey = new Map(
    routesOf(name).map((route) => [
      `${route.method} ${route.path}`,
      // RuntimeFor<F> holds what every route of F needs, so widening the route's own type is safe.
      httpFunction(route as RouteSpec, runtime),
    ]),
  );
  return async (event, context) => {
    const served = byKey.get(event.routeKey);
    if (served) return served(event, context);
    return errorResponse(new NotFoundError(`no route ${event.routeKey} in function ${name}`));
  };
}

/** A JSON body checked with `schema` (an absent body as `{}`), at most `maxBytes` before parsing. */
export function jsonBodyOf<S extends z.ZodType>(
  event: Pick<APIGatewayProxyEventV2, "body" | "isBase64Encoded">,
  schema: S,
  maxBytes: number,
): z.infer<S> {
  const raw = readJsonBody(event, maxBytes);
  return validate(schema, raw === NO_BODY ? {} : raw, "body");
}

/**
 * Bodies are JSON whatever their content-type says: a plain `curl -d` (form-encoded by default)
 * must work, and a body that is not JSON is a 400 either way.
 */
function readJsonBody(
  event: Pick<APIGatewayProxyEventV2, "body" | "isBase64Encoded">,
  maxBytes: number,
): unknown {
  if (event.body === undefined || event.body === "") return NO_BODY;
  const text = event.isBase64Encoded ? Buffer.from(event.body, "base64").toString("utf8") : event.body;
  if (Buffer.byteLength(text, "utf8") > maxBytes) {
    throw new PayloadTooLargeError(`request body exceeds ${maxBytes} bytes`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError("request body is not valid JSON");
  }
}

/** The validated `kernelId` of a path or a body, when it has one. */
function kernelIdOf(value: unknown): string | undefined {
  const kernelId: unknown = (value as { kernelId?: unknown } | undefined)?.kernelId;
  return typeof kernelId === "string" ? kernelId : undefined;
}

/** A body of bytes (an upload chunk): whatever its content-type, never parsed. */
function readBinaryBody(event: APIGatewayProxyEventV2, maxBytes: number): Buffer {
  const body = event.body ?? "";
  const bytes = event.isBase64Encoded ? Buffer.from(body, "base64") : Buffer.from(body, "utf8");
  if (bytes.length > maxBytes) throw new PayloadTooLargeError(`request body exceeds ${maxBytes} bytes`);
  return bytes;
}

/** Checks one part of a request with its schema; a mismatch is a 400 naming each issue's place. */
export function validate<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: "path" | "body" | "query",
): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    path: [where, ...issue.path.map(String)].join("."),
    message: issue.message,
  }));
  const first = issues[0];
  throw new ValidationError(first ? `invalid ${first.path}: ${first.message}` : `invalid ${where}`, issues);
}
