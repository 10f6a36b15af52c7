import type { components } from "./openapi.js";

/**
 * The service's shapes, taken from the generated `openapi.d.ts` so they follow `openapi.json`
 * rather than a hand copy that could drift from it.
 */

type Schemas = components["schemas"];

/** A kernel as its caller sees it (`POST /kernels`, `GET /kernels/{kernelId}`). */
export type KernelView = Schemas["KernelView"];

/** What `start` answers: the kernel, and whether this call made it (201) or found it live (200). */
export type StartedKernel = KernelView & { created: boolean };

/** What `start` accepts: every field optional, as the service's `StartBody`. */
export type StartOptions = Schemas["StartBody"];

/** What a run displayed and how it ended; a timeout is a result (`status: "timeout"`), not an error. */
export type RunResult = Schemas["RunResult"];

/** The exception a run raised, as the kernel reported it. */
export type RunError = Schemas["RunError"];

/** A file a run created or changed. */
export type Artifact = Schemas["Artifact"];

/** A queued run: its state, and its outcome once it has one. */
export type RunView = Schemas["RunView"];

/** A queued run's status; `queued` and `running` are the ones still waiting for an outcome. */
export type RunStatus = RunView["status"];

/** A file written into (or found in) the kernel's working directory. */
export type FileInfo = Schemas["FileInfo"];

/** A listing of a folder of the kernel's working directory. */
export type FileListing = Schemas["FileListing"];

/** One entry of a {@link FileListing}. */
export type FileEntry = FileListing["files"][number];

/** A chunked upload under way. */
export type UploadProgress = Schemas["UploadProgress"];

/** The service's error body. */
export type ErrorBody = Schemas["Error"];

/** Every code the service itself may put in `{"error": {"code"}}`. */
export type ServiceErrorCode = ErrorBody["error"]["code"];

/**
 * One event of a streamed run ({@link PyboxClient.stream}), in the RunResult's own shapes: each
 * output as the kernel produced it, then `done` with the whole RunResult.
 */
export type RunEvent =
  | { event: "stream"; name: string; text: string }
  | { event: "display" | "result"; data: Record<string, unknown> }
  | { event: "error"; error: NonNullable<RunResult["error"]> }
  | { event: "done"; result: RunResult };
