import { httpHandler } from "../lib/http/handler.ts";
import { json } from "../lib/http/responses.ts";
import { KernelPathSchema } from "../lib/http/schemas.ts";
import { getRuntime } from "../lib/runtime.ts";

const { sandbox } = await getRuntime();

/** `DELETE /kernels/{kernelId}`: stop and forget the kernel; 204 also when it was already gone. */
export const handler = httpHandler({
  params: KernelPathSchema,
  handle: async ({ owner, params }) => {
    await sandbox.stop(owner, params.kernelId);
    return json(204);
  },
});
