import * as z from "zod";
import { InstantSchema } from "./kernel.ts";

/**
 * What a run gives back, written once: the TypeScript types, the HTTP response, the stored result
 * of a queued run and the OpenAPI component are all this schema. A superset of pybox's
 * `PyBoxOut{data, error}`, so a pybox caller reads it unchanged.
 */

/** One displayed output: MIME type → payload (`text/plain` string, `image/png` base64, …). */
export const MimeBundleSchema = z.record(z.string(), z.unknown());

/** One displayed output, as {@link MimeBundleSchema} describes it. */
export type MimeBundle = z.infer<typeof MimeBundleSchema>;

/** The Python exception a run ended in, as the kernel reported it (ANSI colours removed). */
export const RunErrorSchema = z
  .strictObject({ ename: z.string(), evalue: z.string(), traceback: z.array(z.string()) })
  .meta({ description: "The exception the code raised, or the TimeoutError of an interrupted run." });

/** The exception of {@link RunErrorSchema}. */
export type RunError = z.infer<typeof RunErrorSchema>;

/** How a run ended: the code finished, raised, or was interrupted at its deadline. */
export const RunStatusSchema = z.enum(["ok", "error", "timeout"]);

/** One of {@link RunStatusSchema}'s values. */
export type RunStatus = z.infer<typeof RunStatusSchema>;

/** A file under the kernel's working directory that a run created or changed. */
export const ArtifactSchema = z
  .strictObject({
    path: z.string().meta({ description: "Relative to the kernel's working directory, `/`-separated." }),
    size: z.number().int().min(0).meta({ description: "Bytes, when the run ended." }),
    mtime: InstantSchema.meta({ description: "Last modified, when the run ended." }),
  })
  .meta({
    description: "A file the run created or changed; fetch it with GET /kernels/{kernelId}/files/{path}.",
  });

/** A file a run made, as {@link ArtifactSchema} describes it. */
export type Artifact = z.infer<typeof ArtifactSchema>;

/** `POST /kernels/{kernelId}/run`, and a finished queued run's `result`. */
export const RunResultSchema = z
  .strictObject({
    status: RunStatusSchema,
    data: z.array(MimeBundleSchema).meta({
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
    artifacts: z.array(ArtifactSchema).meta({
      description:
        "Files under the working directory this run created or changed, newest first, at most 100; hidden ones (names starting with `.`, such as upload temporaries, `.ipynb_checkpoints`, `.cache`) and `__pycache__` never. `[]` when none, or when the kernel could not say.",
    }),
    artifactsTruncated: z.boolean().optional().meta({
      description: "Present (true) when the run changed more files than `artifacts` lists.",
    }),
    restarted: z.boolean().optional().meta({
      description: "Set when the kernel had to be shut down to end the run; its variables are gone.",
    }),
  })
  .meta({ description: "What a run displayed, a superset of pybox's PyBoxOut." });

/** What a run displayed, in order: {@link RunResultSchema} as a type. */
export type RunResult = z.infer<typeof RunResultSchema>;
