import * as z from "zod";
import { CallerEnvSchema, CodeSchema, CwdSchema, KernelIdSchema, RunIdSchema } from "./kernel.ts";

const Addressed = {
  /** The caller the kernel belongs to: trusted, set by our own API or a trusted producer. */
  owner: z.string().trim().min(1).max(1_024),
  kernelId: KernelIdSchema,
};

/**
 * A message on the run queue (`../shared/ARCHITECTURE.md`, "Queue messages"), shared by our API,
 * trusted producers and the consumer. Our API sends only `run`; trusted producers may send all three. Unknown fields are refused: a producer's typo must
 * land in the dead-letter queue, not be half-obeyed.
 */
export const QueueMessageSchema = z.discriminatedUnion("action", [
  z.strictObject({
    action: z.literal("start"),
    ...Addressed,
    cwd: CwdSchema.optional(),
    env: CallerEnvSchema.optional(),
  }),
  z.strictObject({
    action: z.literal("run"),
    ...Addressed,
    runId: RunIdSchema.optional(),
    code: CodeSchema,
    timeoutMs: z.number().int().min(1).optional(),
  }),
  z.strictObject({ action: z.literal("stop"), ...Addressed }),
]);

/** One validated queue message. */
export type QueueMessage = z.infer<typeof QueueMessageSchema>;

/** A `run` message. */
export type RunMessage = Extract<QueueMessage, { action: "run" }>;
