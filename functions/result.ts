import { httpHandler } from "../lib/http/handler.ts";
import { json } from "../lib/http/responses.ts";
import { RunPathSchema } from "../lib/http/schemas.ts";
import { getRequestRuntime } from "../lib/runtime.ts";

const { runs } = getRequestRuntime();

/** `GET /kernels/{kernelId}/runs/{runId}`: a queued run's status, and its RunResult once done. */
export const handler = httpHandler({
  params: RunPathSchema,
  handle: async ({ owner, params }) => json(200, await runs.get(owner, params.kernelId, params.runId)),
});
