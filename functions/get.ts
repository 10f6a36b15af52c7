import { loadConfig } from "../lib/config.ts";
import { httpFunctionOf } from "../lib/http/handler.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `GET /kernels/{kernelId}`: the caller's kernel record, liveness checked. */
export const handler = httpFunctionOf("get", await createRuntime(loadConfig()));
