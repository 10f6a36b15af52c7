import { loadConfig } from "../lib/config.ts";
import { httpFunction } from "../lib/http/handler.ts";
import { ROUTE_CATALOGUE } from "../lib/http/routes.ts";
import { createRequestRuntime } from "../lib/runtime.ts";

/** `GET /kernels/{kernelId}/runs/{runId}`: a queued run's status and RunResult; no backend here. */
export const handler = httpFunction(ROUTE_CATALOGUE.result, createRequestRuntime(loadConfig()));
