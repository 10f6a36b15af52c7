import { loadConfig } from "../lib/config.ts";
import { httpFunction } from "../lib/http/handler.ts";
import { ROUTE_CATALOGUE } from "../lib/http/routes.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `POST /kernels/{kernelId}/run`: run code synchronously and return the RunResult. */
export const handler = httpFunction(ROUTE_CATALOGUE.run, await createRuntime(loadConfig()));
