import { loadConfig } from "../lib/config.ts";
import { httpFunctionOf } from "../lib/http/handler.ts";
import { createRequestRuntime } from "../lib/runtime.ts";

/** `GET /kernels/{kernelId}/runs/{runId}`: a queued run's status and RunResult; no backend here. */
export const handler = httpFunctionOf("result", createRequestRuntime(loadConfig()));
