import { loadConfig } from "../lib/config.ts";
import { httpFunction } from "../lib/http/handler.ts";
import { ROUTE_CATALOGUE } from "../lib/http/routes.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `GET /kernels/{kernelId}`: the caller's kernel record, liveness checked. */
export const handler = httpFunction(ROUTE_CATALOGUE.get, await createRuntime(loadConfig()));
