/**
 * The HTTP API's routes and the function serving each: the dev server routes by this table, and
 * the CDK stack makes one API route per entry, so the two cannot drift apart.
 */
export const ROUTES = [
  { method: "POST", path: "/kernels", function: "start" },
  { method: "GET", path: "/kernels/{kernelId}", function: "get" },
  { method: "DELETE", path: "/kernels/{kernelId}", function: "stop" },
  { method: "POST", path: "/kernels/{kernelId}/run", function: "run" },
  { method: "POST", path: "/kernels/{kernelId}/runs", function: "enqueue" },
  { method: "GET", path: "/kernels/{kernelId}/runs/{runId}", function: "result" },
] as const;

/** One route of {@link ROUTES}. */
export type Route = (typeof ROUTES)[number];

/** Name of a function behind a route (its entry file is `functions/<name>.ts`). */
export type RouteFunction = Route["function"];
