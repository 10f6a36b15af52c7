import type { Context } from "aws-lambda";
import type { Config } from "../config.ts";
import { FILE_CHUNK_BYTES, FileInfoSchema, FileListingSchema, UploadProgressSchema } from "../core/files.ts";
import { KernelViewSchema } from "../core/kernel.ts";
import { RunResultSchema } from "../core/run-result.ts";
import { RunViewSchema } from "../core/run-view.ts";
import { CONTENT_RANGE, chunkOf, contentTypeOf, filePathOf, RANGE, rangeOf } from "./file-requests.ts";
import { binary, json } from "./responses.ts";
import { type ErrorStatus, route } from "./route-spec.ts";
import {
  EnqueueBodySchema,
  FilePathParamsSchema,
  KernelPathSchema,
  ListQuerySchema,
  RunBodySchema,
  RunPathSchema,
  RunWaitQuerySchema,
  StartBodySchema,
} from "./schemas.ts";

/**
 * The route catalogue: every HTTP route, written once, with what serves it, what it accepts, what it
 * answers and the one service call it makes. The dev server routes by it, the CDK stack makes one
 * API route and one function per entry, the OpenAPI document and the bundle bench are built from it.
 * Adding a route is an entry here and an entry file `functions/<function>.ts`.
 */

/** Statuses any route can answer with: bad path or body, no caller, a server fault, the store away. */
const COMMON_ERRORS = [400, 401, 413, 500, 503] as const satisfies readonly ErrorStatus[];

/** Links from an answer carrying a `kernelId` to every route taking one. */
const KERNEL_LINKS = {
  GetKernel: { operationId: "get", parameters: { kernelId: "$response.body#/kernelId" } },
  RunCode: { operationId: "run", parameters: { kernelId: "$response.body#/kernelId" } },
  EnqueueRun: { operationId: "enqueue", parameters: { kernelId: "$response.body#/kernelId" } },
  StopKernel: { operationId: "stop", parameters: { kernelId: "$response.body#/kernelId" } },
} as const;

/** Headers of every answer carrying a file's bytes. */
const FILE_HEADERS = {
  "content-type": "Guessed from the file's name; `application/octet-stream` when unknown.",
  etag: "The SHA-256 of the whole file, quoted.",
  "content-length": "Bytes in this answer.",
} as const;

/** JSON escaping can double the code's size; anything beyond that is refused before parsing. */
export const codeBody = (config: Pick<Config, "run">) => config.run.maxCodeBytes * 2 + 1_024;

/** Kept back from a long poll's invocation to read the run once more and answer. */
const RUN_WAIT_RESERVE_MS = 2_000;

/** The epoch ms by which this invocation must have answered. */
export const deadlineOf = (context: Context) => Date.now() + context.getRemainingTimeInMillis();

/** Every route, keyed by its operation id (the OpenAPI document's, and what links name). */
export const ROUTE_CATALOGUE = {
  start: route({
    method: "POST",
    path: "/kernels",
    function: "start",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Start a kernel, or get the caller's live one",
    description:
      "Get-or-create, as pybox's `start`: the caller's live kernel by that id is returned (200) whatever `cwd`/`env` say; otherwise a kernel is started (201), with `restarted: true` when it replaces one that died.",
    tag: "kernels",
    body: StartBodySchema,
    maxBodyBytes: (config) => config.run.maxCodeBytes,
    responses: {
      200: { description: "The caller's live kernel with that id.", body: KernelViewSchema },
      201: { description: "A new kernel.", body: KernelViewSchema },
    },
    errors: [...COMMON_ERRORS, 409, 429, 502],
    links: KERNEL_LINKS,
    handle: async ({ sandbox }, { owner, body, context }) => {
      const { created, kernel } = await sandbox.start(owner, body, { deadline: deadlineOf(context) });
      return json(created ? 201 : 200, kernel);
    },
  }),
  get: route({
    method: "GET",
    path: "/kernels/{kernelId}",
    function: "get",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Get a kernel",
    description: "The caller's kernel record, liveness checked: a kernel whose process is gone is `dead`.",
    tag: "kernels",
    params: KernelPathSchema,
    responses: { 200: { description: "The kernel.", body: KernelViewSchema } },
    errors: [...COMMON_ERRORS, 404, 502],
    handle: async ({ sandbox }, { owner, params }) => json(200, await sandbox.get(owner, params.kernelId)),
  }),
  stop: route({
    method: "DELETE",
    path: "/kernels/{kernelId}",
    function: "stop",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Stop a kernel",
    description: "Asks the kernel to shut down, ends its process if it lingers, and forgets it.",
    tag: "kernels",
    params: KernelPathSchema,
    responses: { 204: { description: "Stopped, or already gone." } },
    errors: [...COMMON_ERRORS, 502],
    handle: async ({ sandbox }, { owner, params }) => {
      await sandbox.stop(owner, params.kernelId);
      return json(204);
    },
  }),
  run: route({
    method: "POST",
    path: "/kernels/{kernelId}/run",
    function: "run",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Run code and wait for its result",
    description:
      "Runs the code in the caller's kernel. Runs on one kernel take turns; a run that waited too long for the one before it gets 409 KERNEL_BUSY. At `timeoutMs` the kernel is interrupted and the result says `timeout`.",
    tag: "runs",
    params: KernelPathSchema,
    body: RunBodySchema,
    maxBodyBytes: codeBody,
    responses: { 200: { description: "What the run displayed, and how it ended.", body: RunResultSchema } },
    errors: [...COMMON_ERRORS, 404, 409, 502],
    handle: async ({ sandbox }, { owner, params, body, context }) => {
      const result = await sandbox.run(owner, params.kernelId, body.code, {
        ...(body.timeoutMs === undefined ? {} : { timeoutMs: body.timeoutMs }),
        deadline: deadlineOf(context),
      });
      return json(200, result);
    },
  }),
  enqueue: route({
    method: "POST",
    path: "/kernels/{kernelId}/runs",
    function: "enqueue",
    auth: "caller",
    runtime: "request",
    table: "read-write",
    summary: "Queue a run",
    description:
      "Checks the request, records the run as `queued` and sends it to the run queue. The same `runId` with the same code answers with that run again; with other code it is 409 RUN_CONFLICT.",
    tag: "runs",
    params: KernelPathSchema,
    body: EnqueueBodySchema,
    maxBodyBytes: codeBody,
    responses: {
      202: { description: "The run, queued (or as it stands, for a repeated runId).", body: RunViewSchema },
    },
    errors: [...COMMON_ERRORS, 404, 409],
    links: {
      GetRun: {
        operationId: "result",
        parameters: { kernelId: "$response.body#/kernelId", runId: "$response.body#/runId" },
      },
    },
    handle: async ({ runs }, { owner, params, body }) =>
      json(202, await runs.submit(owner, params.kernelId, body)),
  }),
  result: route({
    method: "GET",
    path: "/kernels/{kernelId}/runs/{runId}",
    function: "result",
    auth: "caller",
    runtime: "request",
    table: "read",
    summary: "Get a queued run",
    description:
      "A queued run's status, and its RunResult (or why it has none) once it ended. With `waitMs` the answer waits for the run to end (a long poll), so a client learns of it at once instead of polling.",
    tag: "runs",
    params: RunPathSchema,
    query: RunWaitQuerySchema,
    responses: { 200: { description: "The run.", body: RunViewSchema } },
    errors: [...COMMON_ERRORS, 404],
    handle: async ({ runs }, { owner, params, query, context }) =>
      json(
        200,
        await runs.get(owner, params.kernelId, params.runId, {
          waitMs: Math.min(
            query.waitMs ?? 0,
            Math.max(0, context.getRemainingTimeInMillis() - RUN_WAIT_RESERVE_MS),
          ),
        }),
      ),
  }),
  putFile: route({
    method: "PUT",
    path: "/kernels/{kernelId}/files/{path+}",
    function: "files",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Write a file into the kernel's working directory",
    description:
      "The body is the file's bytes; parent folders are made. A file larger than one request goes in chunks, in order, each with `Content-Range: bytes <first>-<last>/<total>` (at most 4 MiB each): every chunk but the last is answered 202 with the bytes received so far; the file appears under its name only once the last is in. Paths are relative to the kernel's working directory; `..`, absolute paths and symbolic links out of it are refused.",
    tag: "files",
    params: FilePathParamsSchema,
    binaryBody: true,
    maxBodyBytes: () => FILE_CHUNK_BYTES,
    requestHeaders: {
      "content-range": {
        description: "`bytes <first>-<last>/<total>`: this body is one chunk of a larger file.",
        pattern: CONTENT_RANGE,
      },
    },
    responses: {
      200: { description: "The file replaced one of the same name.", body: FileInfoSchema },
      201: { description: "A new file.", body: FileInfoSchema },
      202: { description: "A chunk is in; send the one starting at `received`.", body: UploadProgressSchema },
    },
    errors: [...COMMON_ERRORS, 404, 409, 502],
    handle: async ({ sandbox }, { owner, params, bytes, headers, rawPath, context }) => {
      // The service checks the chunk against the body and the file's size against the limit.
      const body = bytes ?? Buffer.alloc(0);
      const chunk = chunkOf(headers["content-range"]);
      const outcome = await sandbox.files.put(owner, params.kernelId, filePathOf(rawPath), body, chunk, {
        deadline: deadlineOf(context),
      });
      if (!outcome.done) return json(202, outcome.progress);
      return json(outcome.created ? 201 : 200, outcome.file);
    },
  }),
  getFile: route({
    method: "GET",
    path: "/kernels/{kernelId}/files/{path+}",
    function: "files",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Read a file of the kernel's working directory",
    description:
      "The file's bytes, with its SHA-256 as `ETag`. A file larger than one response (4 MiB) is read in parts with `Range: bytes=<first>-<last>` (206); asking for all of it is 413.",
    tag: "files",
    params: FilePathParamsSchema,
    requestHeaders: {
      range: {
        description: "`bytes=<first>-[<last>]`: one part of the file (at most 4 MiB).",
        pattern: RANGE,
      },
    },
    responses: {
      200: { description: "The whole file.", body: "binary", headers: FILE_HEADERS },
      206: {
        description: "The part asked for.",
        body: "binary",
        headers: { ...FILE_HEADERS, "content-range": "`bytes <first>-<last>/<size>`." },
      },
    },
    errors: [...COMMON_ERRORS, 404, 409, 502],
    handle: async ({ sandbox }, { owner, params, headers, rawPath, context }) => {
      const path = filePathOf(rawPath);
      const read = await sandbox.files.get(owner, params.kernelId, path, rangeOf(headers.range), {
        deadline: deadlineOf(context),
      });
      const common = {
        "content-type": contentTypeOf(path),
        etag: `"${read.file.sha256}"`,
        "accept-ranges": "bytes",
        "last-modified": new Date(read.file.mtime).toUTCString(),
      };
      if (!read.range) return binary(200, read.bytes, common);
      const { start, end, total } = read.range;
      return binary(206, read.bytes, { ...common, "content-range": `bytes ${start}-${end}/${total}` });
    },
  }),
  deleteFile: route({
    method: "DELETE",
    path: "/kernels/{kernelId}/files/{path+}",
    function: "files",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "Delete a file of the kernel's working directory",
    description: "Removes a file (or an empty folder); a folder with content is refused with 409.",
    tag: "files",
    params: FilePathParamsSchema,
    responses: { 204: { description: "Deleted." } },
    errors: [...COMMON_ERRORS, 404, 409, 502],
    handle: async ({ sandbox }, { owner, params, rawPath, context }) => {
      await sandbox.files.remove(owner, params.kernelId, filePathOf(rawPath), {
        deadline: deadlineOf(context),
      });
      return json(204);
    },
  }),
  listFiles: route({
    method: "GET",
    path: "/kernels/{kernelId}/files",
    function: "files",
    auth: "caller",
    runtime: "kernels",
    table: "read-write",
    summary: "List files of the kernel's working directory",
    description:
      "The files and folders under `path` (the working directory by default), recursively with `recursive=true`, sorted by path and capped (`truncated`).",
    tag: "files",
    params: KernelPathSchema,
    query: ListQuerySchema,
    responses: { 200: { description: "The listing.", body: FileListingSchema } },
    errors: [...COMMON_ERRORS, 404, 409, 502],
    handle: async ({ sandbox }, { owner, params, query, context }) =>
      json(
        200,
        await sandbox.files.list(owner, params.kernelId, query.path, query.recursive, {
          deadline: deadlineOf(context),
        }),
      ),
  }),
} as const;

/** A route's operation id: its key in the catalogue. */
export type OperationId = keyof typeof ROUTE_CATALOGUE;

/** One route of the catalogue, whatever its schemas, with its operation id. */
export type Route = (typeof ROUTE_CATALOGUE)[OperationId] & { operationId: OperationId };

/** The name of a function behind routes (its entry file is `functions/<name>.ts`). */
export type RouteFunction = Route["function"];

/** The catalogue as a list, in its order (the OpenAPI document's and the dev server's). */
export const ROUTES: readonly Route[] = Object.entries(ROUTE_CATALOGUE).map(
  ([operationId, spec]) => ({ ...spec, operationId }) as Route,
);

/** The routes one function serves (a function may serve several, as `files` does). */
export function routesOf(name: RouteFunction): readonly Route[] {
  return ROUTES.filter((route) => route.function === name);
}
