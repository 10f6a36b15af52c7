import { posix } from "node:path";
import * as z from "zod";
import {
  CALLER_ENV_KEY,
  MAX_CALLER_ENV_ENTRIES,
  MAX_CALLER_ENV_VALUE,
  reservedEnvReason,
} from "./caller-env.ts";

/**
 * The words every room shares about kernels and runs, written once: the HTTP edge, the queue
 * consumer, the stores and the clients validate with these same schemas.
 */

/** The caller's name for a kernel: safe in URLs, keys, file names and Kubernetes labels. */
export const KernelIdSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
    "must be 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit",
  );

/** A queued run's id: ours (a UUID) or the caller's own, to make a retried POST idempotent. */
export const RunIdSchema = KernelIdSchema;

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

/** What `start` is asked for (pybox `start(kernel_id, cwd)`, plus caller env). */
export const StartRequestSchema = z.strictObject({
  kernelId: KernelIdSchema.optional(),
  cwd: CwdSchema.optional(),
  env: CallerEnvSchema.optional(),
});

/** A start as {@link StartRequestSchema} accepts it. */
export type StartRequest = z.infer<typeof StartRequestSchema>;

/** An instant as the store writes it (`Date.toISOString()`, always UTC). */
export const InstantSchema = z.iso.datetime();

/** Where a kernel is in its life, as its caller sees it. */
export const KernelStateSchema = z.enum(["starting", "idle", "busy", "dead"]).meta({
  description: "`busy` while a run holds the kernel; `dead` once its process is gone (start it again).",
});

/** One of {@link KernelStateSchema}'s values. */
export type KernelState = z.infer<typeof KernelStateSchema>;

/** `GET /kernels/{kernelId}` and `POST /kernels`: a kernel as callers see it (no ref, no addresses, no keys). */
export const KernelViewSchema = z
  .strictObject({
    kernelId: KernelIdSchema,
    backend: z.string().meta({ description: "The backend running the kernel: local, gateway or cluster." }),
    state: KernelStateSchema,
    createdAt: InstantSchema,
    lastActivityAt: InstantSchema,
    restarted: z.boolean().optional().meta({
      description: "Present (true) on the start that replaced a dead kernel: the old variables are gone.",
    }),
  })
  .meta({ description: "A kernel as its caller sees it." });

/** A kernel as {@link KernelViewSchema} describes it. */
export type KernelView = z.infer<typeof KernelViewSchema>;
