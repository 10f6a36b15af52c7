import type { APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import type * as z from "zod";
import type { Config } from "../config.ts";
import type { ErrorCode } from "../errors.ts";
import type { RequestRuntime, Runtime } from "../runtime.ts";
import type { STATUS_BY_CODE } from "./error-handler.ts";

/**
 * The shape of one entry of the route catalogue (`routes.ts`): what a route accepts, answers and
 * does, and the request its handler works with.
 */

/** The parsed, validated request a route's handler works with. */
export interface HttpRequest<P, B, Q = undefined> {
  owner: string;
  params: P;
  body: B;
  query: Q;
  /** The raw body of a route that takes bytes (`binaryBody`). */
  bytes?: Buffer;
  /** Request headers, names lower-cased (as API Gateway's payload 2.0 gives them). */
  headers: Readonly<Record<string, string | undefined>>;
  /** The path as the caller sent it, still percent-encoded. */
  rawPath: string;
  /** The Lambda context, for the invocation's remaining time. */
  context: Context;
}

/** A status an error can be answered with: one of the values of the error handler's table. */
export type ErrorStatus = (typeof STATUS_BY_CODE)[ErrorCode];

/** A success answer of one route: its status, what it means, and its body (none for a 204). */
export interface SuccessResponse {
  description: string;
  /** A JSON body's schema, or `"binary"` for bytes (a file's content). */
  body?: z.ZodType | "binary";
  /** Headers the answer carries, with what they mean. */
  headers?: Readonly<Record<string, string>>;
}

/**
 * What a function's container must hold: `request` (the stores and the queue: functions that only
 * queue and read runs, whose bundles carry no backend) or `kernels` (a backend too).
 */
export type RuntimeKind = "request" | "kernels";

/** The runtime of each kind. */
export interface RuntimeOf {
  request: RequestRuntime;
  kernels: Runtime;
}

/** One route of the catalogue. */
export interface RouteSpec<
  K extends RuntimeKind = RuntimeKind,
  P extends z.ZodObject | undefined = z.ZodObject | undefined,
  B extends z.ZodType | undefined = z.ZodType | undefined,
  Q extends z.ZodObject | undefined = z.ZodObject | undefined,
> {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  /** The function serving it: its entry is `functions/<function>.ts`. */
  function: string;
  /** Who may call: any caller the API's authorizer (IAM or JWT) lets in, seeing only its own kernels. */
  auth: "caller";
  runtime: K;
  /** How much of the table the function may touch (its IAM grant). */
  table: "read" | "read-write";
  summary: string;
  description: string;
  tag: "kernels" | "runs" | "files";
  /** Path parameters, validated before the handler runs. */
  params?: P;
  /** The request body, validated before the handler runs. */
  body?: B;
  /** Query parameters, validated before the handler runs. */
  query?: Q;
  /** The body is bytes (a file chunk), handed over unparsed as `request.bytes`. */
  binaryBody?: true;
  /** Request headers the route reads, with what they mean (for the OpenAPI document). */
  requestHeaders?: Readonly<Record<string, { description: string; pattern: RegExp }>>;
  /** Largest body accepted before parsing (default 64 KiB); bigger is a 413 before any kernel work. */
  maxBodyBytes?: (config: Config) => number;
  /** Success statuses and their bodies. */
  responses: Readonly<Record<number, SuccessResponse>>;
  /** Error statuses this route can answer with (each with the codes that map to it). */
  errors: readonly ErrorStatus[];
  /** Where the answer leads: OpenAPI links to the routes taking its ids (and Schemathesis' stateful phase). */
  links?: Readonly<Record<string, { operationId: string; parameters: Record<string, string> }>>;
  /** The one service call. */
  handle: (
    runtime: RuntimeOf[K],
    request: HttpRequest<Infer<P>, Infer<B>, Infer<Q>>,
  ) => Promise<APIGatewayProxyStructuredResultV2>;
}

/** The parsed value of an optional schema (`undefined` when the route declares none). */
type Infer<S> = S extends z.ZodType ? z.infer<S> : undefined;

/** Types one entry: infers its schemas, so `handle` sees exactly what they parse to. */
export function route<
  F extends string,
  K extends RuntimeKind,
  P extends z.ZodObject | undefined,
  B extends z.ZodType | undefined,
  Q extends z.ZodObject | undefined,
>(spec: RouteSpec<K, P, B, Q> & { function: F }): RouteSpec<K, P, B, Q> & { function: F } {
  return spec;
}
