import * as z from "zod";
import type { ErrorCode } from "../errors.ts";
import { STATUS_BY_CODE } from "./error-handler.ts";

/**
 * The error body the HTTP API answers with, as a zod schema. The success bodies are the core's
 * own schemas (`lib/core/`), from which their types are derived; this one is the HTTP edge's.
 */

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

/** The body `errorResponse` writes. */
export type ErrorBody = z.infer<typeof ErrorBodySchema>;
