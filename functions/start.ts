import { loadConfig } from "../lib/config.ts";
import { httpFunctionOf } from "../lib/http/handler.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `POST /kernels`: get-or-create the caller's kernel (201 made, 200 already running). */
export const handler = httpFunctionOf("start", await createRuntime(loadConfig()));
