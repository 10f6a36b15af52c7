import { getConfig } from "../lib/config.ts";
import { httpHandler } from "../lib/http/handler.ts";
import { json } from "../lib/http/responses.ts";
import { EnqueueBodySchema, KernelPathSchema } from "../lib/http/schemas.ts";
import { getRequestRuntime } from "../lib/runtime.ts";

const { runs } = getRequestRuntime();
/** JSON escaping can double the code's size; anything beyond that is refused before parsing. */
const maxBodyBytes = getConfig().run.maxCodeBytes * 2 + 1_024;

/** `POST /kernels/{kernelId}/runs`: queue a run that may outlast an HTTP request; `202` with its id. */
export const handler = httpHandler({
  params: KernelPathSchema,
  body: EnqueueBodySchema,
  maxBodyBytes,
  handle: async ({ owner, params, body }) => json(202, await runs.submit(owner, params.kernelId, body)),
});
