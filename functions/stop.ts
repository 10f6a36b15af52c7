import { loadConfig } from "../lib/config.ts";
import { httpFunction } from "../lib/http/handler.ts";
import { ROUTE_CATALOGUE } from "../lib/http/routes.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `DELETE /kernels/{kernelId}`: stop and forget the kernel; 204 also when it was already gone. */
export const handler = httpFunction(ROUTE_CATALOGUE.stop, await createRuntime(loadConfig()));
