import * as z from "zod";
import { DirPathSchema } from "../core/files.ts";
import { CodeSchema, KernelIdSchema, RunIdSchema, StartRequestSchema } from "../core/kernel.ts";

/** Path parameters of `/kernels/{kernelId}…`. */
export const KernelPathSchema = z.object({ kernelId: KernelIdSchema });

/** Path parameters of `/kernels/{kernelId}/runs/{runId}`. */
export const RunPathSchema = z.object({ kernelId: KernelIdSchema, runId: RunIdSchema });

/** `POST /kernels`: every field optional, unknown fields refused (a typo must not pass silently). */
export const StartBodySchema = StartRequestSchema;

/** `POST /kernels/{kernelId}/run`. Size and timeout limits come from configuration (see the service). */
export const RunBodySchema = z.strictObject({
  code: CodeSchema,
  timeoutMs: z.number().int().min(1).max(3_600_000).optional(),
});

/**
 * `POST /kernels/{kernelId}/runs`. A `runId` of the caller's own makes the POST safe to retry:
 * the same id with the same code answers with the run already queued, never queues it twice.
 */
export const EnqueueBodySchema = RunBodySchema.extend({ runId: RunIdSchema.optional() });

/**
 * Path parameters of `/kernels/{kernelId}/files/{path+}`. The file path itself is checked from the
 * raw path (see `file-requests.ts`), so here it need only be there.
 */
export const FilePathParamsSchema = z.object({
  kernelId: KernelIdSchema,
  path: z.string().min(1).meta({
    description: "The file's path relative to the kernel's working directory; `/` separates folders.",
  }),
});

/** `GET /kernels/{kernelId}/files?path=&recursive=`. */
export const ListQuerySchema = z.strictObject({
  path: DirPathSchema.default("").meta({
    description: "The folder to list; the working directory when empty.",
  }),
  recursive: z
    .enum(["true", "false"])
    .default("false")
    .transform((value) => value === "true")
    .meta({ description: "List folders' contents too." }),
});

/** Longest a `GET …/runs/{runId}` may wait for the run to end: well inside the 29 s invocation. */
export const MAX_RUN_WAIT_MS = 20_000;

/** `GET /kernels/{kernelId}/runs/{runId}?waitMs=`. */
export const RunWaitQuerySchema = z.strictObject({
  waitMs: z
    .string()
    .regex(/^\d{1,6}$/, "a whole number of milliseconds")
    .transform(Number)
    .pipe(z.number().max(MAX_RUN_WAIT_MS))
    .optional()
    .meta({
      description: `Wait up to this many ms (at most ${MAX_RUN_WAIT_MS}) for the run to end before answering; an unfinished run is answered as it stands when the wait is over.`,
    }),
});
