import { httpHandler } from "../lib/http/handler.ts";
import { json } from "../lib/http/responses.ts";
import { KernelPathSchema } from "../lib/http/schemas.ts";
import { getRuntime } from "../lib/runtime.ts";

const { sandbox } = await getRuntime();

/** `GET /kernels/{kernelId}`: the caller's kernel record, liveness checked. */
export const handler = httpHandler({
  params: KernelPathSchema,
  handle: async ({ owner, params }) => json(200, await sandbox.get(owner, params.kernelId)),
});
