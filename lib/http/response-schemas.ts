import * as z from "zod";
import type { ErrorCode } from "../errors.ts";
import type { RunResult } from "../jupyter/run-result.ts";
import type { RunView } from "../sandbox/async-runs.ts";
import type { KernelView } from "../sandbox/service.ts";
import { STATUS_BY_CODE } from "./error-handler.ts";
import { KernelIdSchema, RunIdSchema } from "./schemas.ts";

/**
 * What the HTTP API answers, as zod schemas. The handlers build these bodies from TypeScript types
 * (`KernelView`, `RunResult`, `RunView`, the error handler's body); these schemas restate them so
 * `lib/http/openapi.ts` can describe the responses from the same kind of source as the requests,
 * and the type checks at the bottom of this file fail the build if the two ever disagree.
 */

/** An instant as the store writes it (`Date.toISOString()`, always UTC). */
const InstantSchema = z.iso.datetime();

/** `GET /kernels/{kernelId}` and `POST /kernels`: the kernel record a caller sees. */
export const KernelViewSchema = z
  .strictObject({
    kernelId: KernelIdSchema,
    backend: z.string().meta({ description: "The backend running the kernel: local, gateway or cluster." }),
    state: z.enum(["starting", "idle", "busy", "dead"]).meta({
      description: "`busy` while a run holds the kernel; `dead` once its process is gone (start it again).",
    }),
    createdAt: InstantSchema,
    lastActivityAt: InstantSchema,
    restarted: z.boolean().optional().meta({
      description: "Present (true) on the start that replaced a dead kernel: the old variables are gone.",
    }),
  })
  .meta({ description: "A kernel as its caller sees it." });

/** The Python exception a run ended in (ANSI colours removed). */
export const RunErrorSchema = z
  .strictObject({ ename: z.string(), evalue: z.string(), traceback: z.array(z.string()) })
  .meta({ description: "The exception the code raised, or the TimeoutError of an interrupted run." });

/** `POST /kernels/{kernelId}/run`, and a finished queued run's `result`. */
export const RunResultSchema = z
  .strictObject({
    status: z.enum(["ok", "error", "timeout"]),
    data: z.array(z.record(z.string(), z.unknown())).meta({
      description:
        "One MIME bundle per displayed output, in order (`text/plain`, `text/html`, `image/png`…).",
    }),
    error: RunErrorSchema.nullable(),
    executionCount: z.number().int().min(0).nullable(),
    durationMs: z.number().int().min(0),
    truncated: z.boolean().meta({
      description:
        "Output went over a cap and was cut: a stream shortened, an image too large dropped (its `text/plain` kept), later output dropped, or the error shortened.",
    }),
    restarted: z.boolean().optional().meta({
      description: "Set when the kernel had to be shut down to end the run; its variables are gone.",
    }),
  })
  .meta({ description: "What a run displayed, a superset of pybox's PyBoxOut." });

/** `POST /kernels/{kernelId}/runs` and `GET /kernels/{kernelId}/runs/{runId}`: a queued run. */
export const RunViewSchema = z
  .strictObject({
    runId: RunIdSchema,
    kernelId: KernelIdSchema,
    status: z.enum(["queued", "running", "ok", "error", "timeout"]),
    createdAt: InstantSchema,
    startedAt: InstantSchema.optional(),
    finishedAt: InstantSchema.optional(),
    result: RunResultSchema.optional().meta({ description: "The RunResult, once the kernel gave one." }),
    error: z.strictObject({ code: z.string(), message: z.string() }).optional().meta({
      description:
        "Why the run ended without a RunResult: KERNEL_DEAD, KERNEL_STOPPED, NOT_FOUND, RUN_LOST or RUN_UNDELIVERABLE.",
    }),
  })
  .meta({ description: "A queued run: its state, and its outcome once it has one." });

/** Every code the error handler can answer with, in the order of its status table. */
export const ERROR_CODES = Object.keys(STATUS_BY_CODE) as [ErrorCode, ...ErrorCode[]];

/**
 * The error body for a set of codes: `{"error": {code, message, details?}}`. `details` only comes
 * with validation errors (field paths and messages).
 */
export function errorBodySchema(codes: readonly [ErrorCode, ...ErrorCode[]] = ERROR_CODES) {
  return z
    .strictObject({
      error: z.strictObject({
        code: z.enum(codes),
        message: z.string(),
        details: z
          .array(z.strictObject({ path: z.string(), message: z.string() }))
          .optional()
          .meta({ description: "Field-level validation issues: `path` such as `body.timeoutMs`." }),
      }),
    })
    .meta({ description: "Every error: a machine-readable code and a message safe to show." });
}

/** The error body with any code, as `errorResponse` builds it. */
export const ErrorBodySchema = errorBodySchema();

/** The body `errorResponse` writes, as TypeScript. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Array<{ path: string; message: string }> };
}

/** True when A and B are mutually assignable, so a drift on either side is a type error. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/**
 * Compile-time proof that each schema mirrors the type the handlers really return. Exported only so
 * the checks are not unused; its value means nothing.
 */
export const RESPONSE_TYPES_MATCH: [
  Same<z.infer<typeof KernelViewSchema>, KernelView>,
  Same<z.infer<typeof RunResultSchema>, RunResult>,
  Same<z.infer<typeof RunViewSchema>, RunView>,
  Same<z.infer<typeof ErrorBodySchema>, ErrorBody>,
] = [true, true, true, true];
