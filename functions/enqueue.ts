import { loadConfig } from "../lib/config.ts";
import { httpFunction } from "../lib/http/handler.ts";
import { ROUTE_CATALOGUE } from "../lib/http/routes.ts";
import { createRequestRuntime } from "../lib/runtime.ts";

/** `POST /kernels/{kernelId}/runs`: queue a run that may outlast an HTTP request; no backend here. */
export const handler = httpFunction(ROUTE_CATALOGUE.enqueue, createRequestRuntime(loadConfig()));
