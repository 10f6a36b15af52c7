import { loadConfig } from "../lib/config.ts";
import { httpFunctionOf } from "../lib/http/handler.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `POST /kernels/{kernelId}/run`: run code synchronously and return the RunResult. */
export const handler = httpFunctionOf("run", await createRuntime(loadConfig()));
