import { loadConfig } from "../lib/config.ts";
import { httpFunctionOf } from "../lib/http/handler.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `DELETE /kernels/{kernelId}`: stop and forget the kernel; 204 also when it was already gone. */
export const handler = httpFunctionOf("stop", await createRuntime(loadConfig()));
