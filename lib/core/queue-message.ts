import * as z from "zod";
import { CallerEnvSchema, CodeSchema, CwdSchema, KernelIdSchema, RunIdSchema } from "./kernel.ts";

const Addressed = {
  /** The caller the kernel belongs to: trusted, set by our own API or a trusted producer. */
  owner: z.string().trim().min(1).max(1_024),
  kernelId: KernelIdSchema,
};

/**
 * A message on the run queue (`../shared/ARCHITECTURE.md`, "Queue messages"), shared by our API,
 * trusted producers and the consumer. Our API sends `run`, and `refill` when a start took a kernel
 * of the warm pool; trusted producers may send `start`, `run` and `stop`. Unknown fields are
 * refused: a producer's typo must land in the dead-letter queue, not be half-obeyed.
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
  /** Brings the warm pool back to its size; addressed to no kernel, harmless to repeat. */
  z.strictObject({ action: z.literal("refill") }),
]);

/** One validated queue message. */
export type QueueMessage = z.infer<typeof QueueMessageSchema>;

/** A message about one caller's kernel (every action but `refill`). */
export type KernelMessage = Exclude<QueueMessage, { action: "refill" }>;

/** A `run` message. */
export type RunMessage = Extract<QueueMessage, { action: "run" }>;
