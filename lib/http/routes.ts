import type { APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";
import type * as z from "zod";
import type { Config } from "../config.ts";
import { KernelViewSchema } from "../core/kernel.ts";
import { RunResultSchema } from "../core/run-result.ts";
import { RunViewSchema } from "../core/run-view.ts";
import type { ErrorCode } from "../errors.ts";
import type { RequestRuntime, Runtime } from "../runtime.ts";
import type { STATUS_BY_CODE } from "./error-handler.ts";
import { json } from "./responses.ts";
import {
  EnqueueBodySchema,
  KernelPathSchema,
  RunBodySchema,
  RunPathSchema,
  StartBodySchema,
} from "./schemas.ts";

/**
 * The route catalogue: every HTTP route, written once, with what serves it, what it accepts, what it
 * answers and the one service call it makes. The dev server routes by it, the CDK stack makes one
 * API route and one function per entry, the OpenAPI document and the bundle bench are built from it.
 * Adding a route is an entry here and an entry file `functions/<function>.ts`.
 */

/** The parsed, validated request a route's handler works with. */
export interface HttpRequest<P, B> {
  owner: string;
  params: P;
  body: B;
  /** The Lambda context, for the invocation's remaining time. */
  context: Context;
}

/** A status an error can be answered with: one of the values of the error handler's table. */
export type ErrorStatus = (typeof STATUS_BY_CODE)[ErrorCode];

/** A success answer of one route: its status, what it means, and its body (none for a 204). */
export interface SuccessResponse {
  description: string;
  body?: z.ZodType;
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
  tag: "kernels" | "runs";
  /** Path parameters, validated before the handler runs. */
  params?: P;
  /** The request body, validated before the handler runs. */
  body?: B;
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
    request: HttpRequest<Infer<P>, Infer<B>>,
  ) => Promise<APIGatewayProxyStructuredResultV2>;
}

/** The parsed value of an optional schema (`undefined` when the route declares none). */
type Infer<S> = S extends z.ZodType ? z.infer<S> : undefined;

/** Types one entry: infers its schemas, so `handle` sees exactly what they parse to. */
function route<
  F extends string,
  K extends RuntimeKind,
  P extends z.ZodObject | undefined,
  B extends z.ZodType | undefined,
>(spec: RouteSpec<K, P, B> & { function: F }): RouteSpec<K, P, B> & { function: F } {
  return spec;
}

/** Statuses any route can answer with: bad path or body, no caller, a server fault, the store away. */
const COMMON_ERRORS = [400, 401, 413, 500, 503] as const satisfies readonly ErrorStatus[];

/** Links from an answer carrying a `kernelId` to every route taking one. */
const KERNEL_LINKS = {
  GetKernel: { operationId: "get", parameters: { kernelId: "$response.body#/kernelId" } },
  RunCode: { operationId: "run", parameters: { kernelId: "$response.body#/kernelId" } },
  EnqueueRun: { operationId: "enqueue", parameters: { kernelId: "$response.body#/kernelId" } },
  StopKernel: { operationId: "stop", parameters: { kernelId: "$response.body#/kernelId" } },
} as const;

/** JSON escaping can double the code's size; anything beyond that is refused before parsing. */
const codeBody = (config: Config) => config.run.maxCodeBytes * 2 + 1_024;

/** The epoch ms by which this invocation must have answered. */
const deadlineOf = (context: Context) => Date.now() + context.getRemainingTimeInMillis();

/** Every route, keyed by the function serving it. */
export const ROUTE_CATALOGUE = {
  start: route({
    method: "POST",
    path: "/kernels",
    function: "start",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Start a kernel, or get the caller's live one",
    description:
      "Get-or-create, as pybox's `start`: the caller's live kernel by that id is returned (200) whatever `cwd`/`env` say; otherwise a kernel is started (201), with `restarted: true` when it replaces one that died.",
    tag: "kernels",
    body: StartBodySchema,
    maxBodyBytes: (config) => config.run.maxCodeBytes,
    responses: {
      200: { description: "The caller's live kernel with that id.", body: KernelViewSchema },
      201: { description: "A new kernel.", body: KernelViewSchema },
    },
    errors: [...COMMON_ERRORS, 409, 429, 502],
    links: KERNEL_LINKS,
    handle: async ({ sandbox }, { owner, body, context }) => {
      const { created, kernel } = await sandbox.start(owner, body, { deadline: deadlineOf(context) });
      return json(created ? 201 : 200, kernel);
    },
  }),
  get: route({
    method: "GET",
    path: "/kernels/{kernelId}",
    function: "get",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Get a kernel",
    description: "The caller's kernel record, liveness checked: a kernel whose process is gone is `dead`.",
    tag: "kernels",
    params: KernelPathSchema,
    responses: { 200: { description: "The kernel.", body: KernelViewSchema } },
    errors: [...COMMON_ERRORS, 404, 502],
    handle: async ({ sandbox }, { owner, params }) => json(200, await sandbox.get(owner, params.kernelId)),
  }),
  stop: route({
    method: "DELETE",
    path: "/kernels/{kernelId}",
    function: "stop",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Stop a kernel",
    description: "Asks the kernel to shut down, ends its process if it lingers, and forgets it.",
    tag: "kernels",
    params: KernelPathSchema,
    responses: { 204: { description: "Stopped, or already gone." } },
    errors: [...COMMON_ERRORS, 502],
    handle: async ({ sandbox }, { owner, params }) => {
      await sandbox.stop(owner, params.kernelId);
      return json(204);
    },
  }),
  run: route({
    method: "POST",
    path: "/kernels/{kernelId}/run",
    function: "run",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Run code and wait for its result",
    description:
      "Runs the code in the caller's kernel. Runs on one kernel take turns; a run that waited too long for the one before it gets 409 KERNEL_BUSY. At `timeoutMs` the kernel is interrupted and the result says `timeout`.",
    tag: "runs",
    params: KernelPathSchema,
    body: RunBodySchema,
    maxBodyBytes: codeBody,
    responses: { 200: { description: "What the run displayed, and how it ended.", body: RunResultSchema } },
    errors: [...COMMON_ERRORS, 404, 409, 502],
    handle: async ({ sandbox }, { owner, params, body, context }) => {
      const result = await sandbox.run(owner, params.kernelId, body.code, {
        ...(body.timeoutMs === undefined ? {} : { timeoutMs: body.timeoutMs }),
        deadline: deadlineOf(context),
      });
      return json(200, result);
    },
  }),
  enqueue: route({
    method: "POST",
    path: "/kernels/{kernelId}/runs",
    function: "enqueue",
    auth: "caller",
    runtime: "request",
    table: "read-write",
    summary: "Queue a run",
    description:
      "Checks the request, records the run as `queued` and sends it to the run queue. The same `runId` with the same code answers with that run again; with other code it is 409 RUN_CONFLICT.",
    tag: "runs",
    params: KernelPathSchema,
    body: EnqueueBodySchema,
    maxBodyBytes: codeBody,
    responses: {
      202: { description: "The run, queued (or as it stands, for a repeated runId).", body: RunViewSchema },
    },
    errors: [...COMMON_ERRORS, 404, 409],
    links: {
      GetRun: {
        operationId: "result",
        parameters: { kernelId: "$response.body#/kernelId", runId: "$response.body#/runId" },
      },
    },
    handle: async ({ runs }, { owner, params, body }) =>
      json(202, await runs.submit(owner, params.kernelId, body)),
  }),
  result: route({
    method: "GET",
    path: "/kernels/{kernelId}/runs/{runId}",
    function: "result",
    auth: "caller",
    runtime: "request",
    table: "read",
    summary: "Get a queued run",
    description: "A queued run's status, and its RunResult (or why it has none) once it ended.",
    tag: "runs",
    params: RunPathSchema,
    responses: { 200: { description: "The run.", body: RunViewSchema } },
    errors: [...COMMON_ERRORS, 404],
    handle: async ({ runs }, { owner, params }) =>
      json(200, await runs.get(owner, params.kernelId, params.runId)),
  }),
} as const;

/** The name of a function behind a route (its entry file is `functions/<name>.ts`). */
export type RouteFunction = keyof typeof ROUTE_CATALOGUE;

/** One route of the catalogue, whatever its schemas. */
export type Route = (typeof ROUTE_CATALOGUE)[RouteFunction];

/** The catalogue as a list, in its order (the OpenAPI document's and the dev server's). */
export const ROUTES: readonly Route[] = Object.values(ROUTE_CATALOGUE);
