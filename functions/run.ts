import { getConfig } from "../lib/config.ts";
import { httpHandler } from "../lib/http/handler.ts";
import { json } from "../lib/http/responses.ts";
import { KernelPathSchema, RunBodySchema } from "../lib/http/schemas.ts";
import { getRuntime } from "../lib/runtime.ts";

const { sandbox } = await getRuntime();
/** JSON escaping can double the code's size; anything beyond that is refused before parsing. */
const maxBodyBytes = getConfig().run.maxCodeBytes * 2 + 1_024;

/** `POST /kernels/{kernelId}/run`: run code synchronously and return the RunResult. */
export const handler = httpHandler({
  params: KernelPathSchema,
  body: RunBodySchema,
  maxBodyBytes,
  handle: async ({ owner, params, body, context }) => {
    const deadline = Date.now() + context.getRemainingTimeInMillis();
    const result = await sandbox.run(owner, params.kernelId, body.code, {
      ...(body.timeoutMs === undefined ? {} : { timeoutMs: body.timeoutMs }),
      deadline,
    });
    return json(200, result);
  },
});
