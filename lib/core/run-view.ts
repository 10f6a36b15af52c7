import * as z from "zod";
import { InstantSchema, KernelIdSchema, RunIdSchema } from "./kernel.ts";
import { RunResultSchema } from "./run-result.ts";

/** Where a queued run is: waiting, under way, or ended with one of the RunResult statuses. */
export const QueuedRunStatusSchema = z.enum(["queued", "running", "ok", "error", "timeout"]);

/** One of {@link QueuedRunStatusSchema}'s values. */
export type QueuedRunStatus = z.infer<typeof QueuedRunStatusSchema>;

/** Why a queued run ended without a RunResult: the kernel was gone, or its invocation was lost. */
export const RunFailureSchema = z.strictObject({ code: z.string(), message: z.string() });

/** `POST /kernels/{kernelId}/runs` and `GET /kernels/{kernelId}/runs/{runId}`: a queued run. */
export const RunViewSchema = z
  .strictObject({
    runId: RunIdSchema,
    kernelId: KernelIdSchema,
    status: QueuedRunStatusSchema,
    createdAt: InstantSchema,
    startedAt: InstantSchema.optional(),
    finishedAt: InstantSchema.optional(),
    result: RunResultSchema.optional().meta({ description: "The RunResult, once the kernel gave one." }),
    error: RunFailureSchema.optional().meta({
      description:
        "Why the run ended without a RunResult: KERNEL_DEAD, KERNEL_STOPPED, NOT_FOUND, RUN_LOST or RUN_UNDELIVERABLE.",
    }),
  })
  .meta({ description: "A queued run: its state, and its outcome once it has one." });

/** A queued run as callers see it, as {@link RunViewSchema} describes it. */
export type RunView = z.infer<typeof RunViewSchema>;
