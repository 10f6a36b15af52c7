import { loadConfig } from "../lib/config.ts";
import { httpFunctionOf } from "../lib/http/handler.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `/kernels/{kernelId}/files…`: files in and out of the kernel's working directory (put, get, delete, list). */
export const handler = httpFunctionOf("files", await createRuntime(loadConfig()));
