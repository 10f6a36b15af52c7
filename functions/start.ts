import { getConfig } from "../lib/config.ts";
import { httpHandler } from "../lib/http/handler.ts";
import { json } from "../lib/http/responses.ts";
import { StartBodySchema } from "../lib/http/schemas.ts";
import { getRuntime } from "../lib/runtime.ts";

const { sandbox } = await getRuntime();

/** `POST /kernels`: get-or-create the caller's kernel (201 made, 200 already running). */
export const handler = httpHandler({
  body: StartBodySchema,
  maxBodyBytes: getConfig().run.maxCodeBytes,
  handle: async ({ owner, body, context }) => {
    const deadline = Date.now() + context.getRemainingTimeInMillis();
    const { created, kernel } = await sandbox.start(owner, body, { deadline });
    return json(created ? 201 : 200, kernel);
  },
});
