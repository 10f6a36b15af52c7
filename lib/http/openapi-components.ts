import type * as z from "zod";
import { FileInfoSchema, FileListingSchema, UploadProgressSchema } from "../core/files.ts";
import { KernelIdSchema, KernelViewSchema } from "../core/kernel.ts";
import { ArtifactSchema, RunErrorSchema, RunResultSchema } from "../core/run-result.ts";
import { RunViewSchema } from "../core/run-view.ts";
import { ErrorBodySchema } from "./response-schemas.ts";
import type { ErrorStatus } from "./route-spec.ts";
import { EnqueueBodySchema, RunBodySchema, StartBodySchema } from "./schemas.ts";

/**
 * The named parts of the OpenAPI document (`components`) and the words that explain them to a
 * reader; the rules themselves come from the schemas, never from here.
 */

/** What a named request schema is, and an example of it (the README's, for `npm start`). */
interface RequestComponent {
  id: string;
  description: string;
  examples: unknown[];
}

/** The named request schemas of `components.schemas`. */
export const REQUEST_COMPONENTS: ReadonlyArray<readonly [z.ZodType, RequestComponent]> = [
  [
    KernelIdSchema,
    {
      id: "KernelId",
      description: "A kernel's (or a run's) id, the caller's own name for it.",
      examples: ["demo"],
    },
  ],
  [
    StartBodySchema,
    {
      id: "StartBody",
      description: "`POST /kernels`. Every field optional; unknown fields are refused.",
      examples: [{ kernelId: "demo" }],
    },
  ],
  [
    RunBodySchema,
    {
      id: "RunBody",
      description: "`POST /kernels/{kernelId}/run`. Unknown fields are refused.",
      examples: [{ code: "import math\nprint(math.sqrt(16))", timeoutMs: 10_000 }],
    },
  ],
  [
    EnqueueBodySchema,
    {
      id: "EnqueueBody",
      description: "`POST /kernels/{kernelId}/runs`. Unknown fields are refused.",
      examples: [{ code: "6 * 7", runId: "demo" }],
    },
  ],
];

/** The named response schemas of `components.schemas` (described by their own `.meta`). */
export const RESPONSE_COMPONENTS: ReadonlyArray<readonly [z.ZodType, string]> = [
  [KernelIdSchema, "KernelId"],
  [KernelViewSchema, "KernelView"],
  [RunErrorSchema, "RunError"],
  [RunResultSchema, "RunResult"],
  [RunViewSchema, "RunView"],
  [ArtifactSchema, "Artifact"],
  [FileInfoSchema, "FileInfo"],
  [UploadProgressSchema, "UploadProgress"],
  [FileListingSchema, "FileListing"],
  [ErrorBodySchema, "Error"],
];

/** What the request fields mean; the rules themselves come from the schemas. */
export const FIELD_DESCRIPTIONS: Record<string, Record<string, string>> = {
  StartBody: {
    kernelId: "The caller's name for the kernel; a UUID v4 is generated when it is omitted.",
    cwd: "The kernel's working directory (an absolute path); a fresh one of its own when omitted.",
    env: "Variables added to the kernel's environment, built from scratch. At most 64; names that pick interpreters, users or preloaded code (PATH, HOME, PYTHON*, LD_*, AWS_*, …) are refused.",
  },
  RunBody: {
    code: "Python (IPython) code to run.",
    timeoutMs:
      "Bounds the code; default 20 s, at most the server's PYBOX_MAX_RUN_TIMEOUT_MS (under API Gateway's 30 s; longer work goes through queued runs).",
  },
  EnqueueBody: {
    code: "Python (IPython) code to run.",
    timeoutMs: "Bounds the code; default 20 s, at most the server's PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS.",
    runId: "The caller's id for the run, making the POST safe to retry; a UUID is generated when omitted.",
  },
};

/** The name of the shared error response of each status, under `components.responses`. */
export const ERROR_RESPONSE_NAMES: Readonly<Record<ErrorStatus, string>> = {
  400: "InvalidRequest",
  401: "Unauthenticated",
  404: "NotFound",
  405: "MethodNotAllowed",
  409: "Conflict",
  413: "PayloadTooLarge",
  429: "Capacity",
  500: "Internal",
  502: "BackendError",
  503: "Unavailable",
};

/** What each error status means to a caller. */
export const ERROR_DESCRIPTIONS: Readonly<Record<ErrorStatus, string>> = {
  400: "Malformed JSON, missing, mistyped or unknown fields, a bad id, an out-of-range timeout, a reserved env name.",
  401: "No caller identity (on the dev server: an Authorization header that is not `Bearer <caller>`).",
  404: "No such kernel (or run) for this caller; another caller's looks exactly the same.",
  405: "The path exists but not with this method; `Allow` lists those it serves.",
  409: "The kernel is busy with another run, still starting, dead or stopped meanwhile, a runId was reused with other code, an upload's chunk does not continue it (out of order or another total), or a folder to delete is not empty.",
  413: "The body, or the code in it, is over the limit; refused before any kernel work.",
  429: "The backend has no capacity for another kernel; retry after `Retry-After`.",
  500: "An internal error; logged in full, never detailed here.",
  502: "The backend or the kernel answered against the protocol.",
  503: "The backend, the store or the run queue cannot be reached, or the kernel could not be launched; retry after `Retry-After`.",
};
