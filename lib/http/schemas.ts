import { posix } from "node:path";
import * as z from "zod";
import {
  CALLER_ENV_KEY,
  MAX_CALLER_ENV_ENTRIES,
  MAX_CALLER_ENV_VALUE,
  reservedEnvReason,
} from "../sandbox/kernel-env.ts";

/** The caller's name for a kernel: safe in URLs, keys, file names and Kubernetes labels. */
export const KernelIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
    "must be 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit",
  );

/** Path parameters of `/kernels/{kernelId}…`. */
export const KernelPathSchema = z.object({ kernelId: KernelIdSchema });

/** A queued run's id: ours (a UUID) or the caller's own, to make a retried POST idempotent. */
export const RunIdSchema = KernelIdSchema;

/** Path parameters of `/kernels/{kernelId}/runs/{runId}`. */
export const RunPathSchema = z.object({ kernelId: KernelIdSchema, runId: RunIdSchema });

/** The caller's kernel variables: names and values checked, reserved names refused. */
export const CallerEnvSchema = z
  .record(
    z.string().regex(CALLER_ENV_KEY, "is not a valid variable name"),
    z.string().max(MAX_CALLER_ENV_VALUE),
  )
  .superRefine((env, ctx) => {
    const keys = Object.keys(env);
    if (keys.length > MAX_CALLER_ENV_ENTRIES) {
      ctx.addIssue({ code: "custom", message: `at most ${MAX_CALLER_ENV_ENTRIES} variables` });
    }
    for (const key of keys) {
      if (!CALLER_ENV_KEY.test(key)) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: "is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)",
        });
        continue;
      }
      const reason = reservedEnvReason(key);
      if (reason) ctx.addIssue({ code: "custom", path: [key], message: reason });
      if (env[key]?.includes("\0"))
        ctx.addIssue({ code: "custom", path: [key], message: "contains a NUL byte" });
    }
  });

/** A kernel's working directory: absolute, and never inside the kernel-visible pseudo file systems. */
export const CwdSchema = z
  .string()
  .max(4_096)
  .regex(/^\/[^\0]*$/, "must be an absolute path")
  .refine((path) => !/^\/(proc|sys|dev)(\/|$)/.test(posix.normalize(path)), {
    message: "may not be under /proc, /sys or /dev",
  });

/**
 * Code to run. A lone UTF-16 surrogate is valid JSON but not encodable as UTF-8: the kernel could
 * never send a reply that echoes it and would hang until it is killed, so it is refused here.
 */
export const CodeSchema = z
  .string({ error: "code is required and must be a string" })
  .refine((code) => !/\p{Cs}/u.test(code), {
    message: "contains a lone UTF-16 surrogate (not valid Unicode)",
  });

/** `POST /kernels`: every field optional, unknown fields refused (a typo must not pass silently). */
export const StartBodySchema = z.strictObject({
  kernelId: KernelIdSchema.optional(),
  cwd: CwdSchema.optional(),
  env: CallerEnvSchema.optional(),
});

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
