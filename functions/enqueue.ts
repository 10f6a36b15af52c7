import { loadConfig } from "../lib/config.ts";
import { httpFunctionOf } from "../lib/http/handler.ts";
import { createRequestRuntime } from "../lib/runtime.ts";

/** `POST /kernels/{kernelId}/runs`: queue a run that may outlast an HTTP request; no backend here. */
export const handler = httpFunctionOf("enqueue", createRequestRuntime(loadConfig()));
