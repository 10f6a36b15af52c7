import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import type * as z from "zod";
import { PayloadTooLargeError, ValidationError } from "../errors.ts";
import { logger } from "../logger.ts";
import { httpErrorHandler } from "./error-handler.ts";
import { callerOf } from "./identity.ts";
import type { HttpRequest, RouteSpec, RuntimeKind, RuntimeOf } from "./routes.ts";

/** What a route declares: its schemas and the one service call it makes. */
export interface RouteDefinition<P extends z.ZodType, B extends z.ZodType> {
  params?: P;
  body?: B;
  /** Largest body accepted before parsing; bigger is a 413 before any kernel work. */
  maxBodyBytes?: number;
  handle: (request: HttpRequest<z.infer<P>, z.infer<B>>) => Promise<APIGatewayProxyStructuredResultV2>;
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
export function httpHandler<P extends z.ZodType, B extends z.ZodType>(
  route: RouteDefinition<P, B>,
): HttpLambda {
  const fn = middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(httpErrorHandler())
    .handler(async (event, context) => {
      const owner = callerOf(event.requestContext);
      const params = route.params ? validate(route.params, event.pathParameters ?? {}, "path") : undefined;
      // Every later line of this request names the kernel (injectLambdaContext resets it after).
      const kernelId: unknown = (params as { kernelId?: unknown } | undefined)?.kernelId;
      if (typeof kernelId === "string") logger.appendKeys({ kernelId });
      const raw = route.body ? readJsonBody(event, route.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES) : undefined;
      const body = route.body ? validate(route.body, raw === NO_BODY ? {} : raw, "body") : undefined;
      return route.handle({ owner, params: params as z.infer<P>, body: body as z.infer<B>, context });
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
>(spec: RouteSpec<K, P, B>, runtime: RuntimeOf[K]): HttpLambda {
  return httpHandler({
    ...(spec.params ? { params: spec.params } : {}),
    ...(spec.body ? { body: spec.body } : {}),
    ...(spec.maxBodyBytes ? { maxBodyBytes: spec.maxBodyBytes(runtime.config) } : {}),
    handle: (request) => spec.handle(runtime, request as Parameters<typeof spec.handle>[1]),
  });
}

/**
 * Bodies are JSON whatever their content-type says: a plain `curl -d` (form-encoded by default)
 * must work, and a body that is not JSON is a 400 either way.
 */
function readJsonBody(event: APIGatewayProxyEventV2, maxBytes: number): unknown {
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

function validate<S extends z.ZodType>(schema: S, value: unknown, where: "path" | "body"): z.infer<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => ({
    path: [where, ...issue.path.map(String)].join("."),
    message: issue.message,
  }));
  const first = issues[0];
  throw new ValidationError(first ? `invalid ${first.path}: ${first.message}` : `invalid ${where}`, issues);
}
