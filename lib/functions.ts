import type { RuntimeKind } from "./http/route-spec.ts";
import { ROUTES, type RouteFunction, routesOf } from "./http/routes.ts";

/**
 * The function list, written once: the functions the catalogue's routes name (one may serve
 * several routes, as `files` does), plus the three that no
 * route of the HTTP API reaches (the streaming run behind a Function URL, the queue consumer and
 * the scheduled reaper). The CDK stack makes one Lambda
 * function per entry and the bundle bench bundles each; every entry's code is `functions/<name>.ts`.
 */

/** How a function is invoked, which fixes its time limit in the stack. */
export type Trigger = "http" | "url" | "queue" | "schedule";

/** What the stack needs to know of one function. */
export interface FunctionSpec {
  description: string;
  trigger: Trigger;
  /** Its IAM grant on the table. */
  table: "read" | "read-write" | "read-write-scan";
  /** Whether its runtime has a backend (and so reads the backend's credentials). */
  runtime: RuntimeKind;
}

/** The functions behind no route of the HTTP API. */
const WORKERS = {
  stream: {
    description:
      "POST /kernels/{kernelId}/run as Server-Sent Events, behind a Function URL (HTTP APIs cannot stream)",
    trigger: "url",
    table: "read-write",
    runtime: "kernels",
  },
  queue: {
    description: "Run queue consumer: executes queued runs",
    trigger: "queue",
    table: "read-write",
    runtime: "kernels",
  },
  reaper: {
    description: "Scheduled: stops kernels idle for longer than the idle timeout",
    trigger: "schedule",
    table: "read-write-scan",
    runtime: "kernels",
  },
} as const satisfies Record<string, FunctionSpec>;

/** The name of one function (its entry file is `functions/<name>.ts`). */
export type FunctionName = RouteFunction | keyof typeof WORKERS;

/** What the stack needs of a function serving routes: a backend and writes if any route needs them. */
function routeFunction(name: RouteFunction): FunctionSpec {
  const routes = routesOf(name);
  const [only] = routes;
  return {
    description:
      routes.length === 1 && only
        ? `${only.method} ${only.path}: ${only.summary}`
        : `${routes.map((route) => `${route.method} ${route.path}`).join(", ")}`,
    trigger: "http",
    table: routes.some((route) => route.table === "read-write") ? "read-write" : "read",
    runtime: routes.some((route) => route.runtime === "kernels") ? "kernels" : "request",
  };
}

/** Every function, by name: those serving routes in catalogue order, then the workers. */
export const FUNCTIONS: Readonly<Record<FunctionName, FunctionSpec>> = {
  ...(Object.fromEntries(
    [...new Set(ROUTES.map((route) => route.function))].map((name) => [name, routeFunction(name)]),
  ) as Record<RouteFunction, FunctionSpec>),
  ...WORKERS,
};

/** Every function's name, in {@link FUNCTIONS}' order. */
export const FUNCTION_NAMES = Object.keys(FUNCTIONS) as FunctionName[];

/**
 * The functions that may start a kernel (a start, a run or streamed run restarting a stuck kernel, a
 * queued start):
 * they take from the warm pool, and ask for its refill through the queue.
 */
export const KERNEL_STARTERS: readonly FunctionName[] = ["start", "run", "stream", "queue"];
