import { loadConfig } from "../lib/config.ts";
import { streamFunction, streamified } from "../lib/http/stream-function.ts";
import { createRuntime } from "../lib/runtime.ts";

/** `POST /kernels/{kernelId}/run` as Server-Sent Events, behind the stack's Function URL. */
export const handler = streamified(streamFunction(await createRuntime(loadConfig())));
