import * as z from "zod";
import { MimeBundleSchema, RunErrorSchema, RunResultSchema } from "./run-result.ts";

/**
 * What a streamed run (`POST /kernels/{kernelId}/run` with `Accept: text/event-stream`) sends as
 * Server-Sent Events, one per output as the kernel produces it, in the RunResult's own shapes, then
 * `done` with the whole RunResult. `failed` ends a stream the service could not finish (its
 * `{code, message}` as an error answer would carry them).
 */
export const RunEventSchema = z.discriminatedUnion("event", [
  z.object({ event: z.literal("stream"), name: z.string(), text: z.string() }),
  z.object({ event: z.literal("display"), data: MimeBundleSchema }),
  z.object({ event: z.literal("result"), data: MimeBundleSchema }),
  z.object({ event: z.literal("error"), error: RunErrorSchema }),
  z.object({ event: z.literal("done"), result: RunResultSchema }),
  z.object({ event: z.literal("failed"), error: z.object({ code: z.string(), message: z.string() }) }),
]);

/** One event of a streamed run. */
export type RunEvent = z.infer<typeof RunEventSchema>;

/** An output event: what the kernel produced while the run went on. */
export type OutputEvent = Extract<RunEvent, { event: "stream" | "display" | "result" | "error" }>;
