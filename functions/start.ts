import { loadConfig } from "../lib/config.ts";
import { httpFunction } from "../lib/http/handler.ts";
import { ROUTE_CATALOGUE } from "../lib/http/routes.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `POST /kernels`: get-or-create the caller's kernel (201 made, 200 already running). */
export const handler = httpFunction(ROUTE_CATALOGUE.start, await createRuntime(loadConfig()));
