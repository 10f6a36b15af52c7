import * as z from "zod";
import packageJson from "../../package.json" with { type: "json" };
import type { ErrorCode } from "../errors.ts";
import { MAX_CALLER_ENV_ENTRIES } from "../sandbox/kernel-env.ts";
import { STATUS_BY_CODE } from "./error-handler.ts";
import {
  ErrorBodySchema,
  errorBodySchema,
  KernelViewSchema,
  RunErrorSchema,
  RunResultSchema,
  RunViewSchema,
} from "./response-schemas.ts";
import { ROUTES, type Route, type RouteFunction } from "./routes.ts";
import {
  CallerEnvSchema,
  EnqueueBodySchema,
  KernelIdSchema,
  KernelPathSchema,
  RunBodySchema,
  RunPathSchema,
  StartBodySchema,
} from "./schemas.ts";

/**
 * The OpenAPI 3.1 description of the HTTP API, built from the route table and the very zod schemas
 * the handlers validate with (`lib/http/schemas.ts`) and answer with (`response-schemas.ts`), by
 * zod's own `z.toJSONSchema`. Nothing here restates a rule: a new route without schemas, or a
 * schema changed, changes the document (and `openapi.json` must be regenerated: `npm run openapi`).
 */

/** The API's version is the package's. */
const PACKAGE_VERSION: string = packageJson.version;

/** A JSON Schema as zod emits it. */
type JsonSchema = z.core.JSONSchema.BaseSchema;

/** A status an error can be answered with: one of the values of the error handler's table. */
type ErrorStatus = (typeof STATUS_BY_CODE)[ErrorCode];

/** A success answer of one route: its status, what it means, and its body (none for a 204). */
interface SuccessResponse {
  description: string;
  body?: z.ZodType;
}

/** What the document needs to know of one route beyond `ROUTES`: its schemas and its answers. */
export interface RouteSchemas {
  summary: string;
  description: string;
  tag: "kernels" | "runs";
  /** Path parameters: the very schema the function validates `pathParameters` with. */
  params?: z.ZodObject;
  /** The request body: the very schema the function validates its body with. */
  body?: z.ZodType;
  /** Success statuses and their bodies. */
  responses: Readonly<Record<number, SuccessResponse>>;
  /** Error statuses this route can answer with (each with the codes that map to it). */
  errors: readonly ErrorStatus[];
  /** Where the answer leads: OpenAPI links to the routes taking its ids (and Schemathesis' stateful phase). */
  links?: Readonly<Record<string, { operationId: RouteFunction; parameters: Record<string, string> }>>;
}

/** Statuses any route can answer with: bad path or body, no caller, a server fault, the store away. */
const COMMON_ERRORS = [400, 401, 413, 500, 503] as const satisfies readonly ErrorStatus[];

/** Links from an answer carrying a `kernelId` to every route taking one. */
const KERNEL_LINKS = {
  GetKernel: { operationId: "get", parameters: { kernelId: "$response.body#/kernelId" } },
  RunCode: { operationId: "run", parameters: { kernelId: "$response.body#/kernelId" } },
  EnqueueRun: { operationId: "enqueue", parameters: { kernelId: "$response.body#/kernelId" } },
  StopKernel: { operationId: "stop", parameters: { kernelId: "$response.body#/kernelId" } },
} as const;

/**
 * The schemas of every route, keyed by the function serving it (`functions/<name>.ts`). The
 * functions import the same `params` and `body` objects from `lib/http/schemas.ts`; a unit test
 * checks every row of `ROUTES` has an entry here and that each function uses these very schemas.
 */
export const ROUTE_SCHEMAS = {
  start: {
    summary: "Start a kernel, or get the caller's live one",
    description:
      "Get-or-create, as pybox's `start`: the caller's live kernel by that id is returned (200) whatever `cwd`/`env` say; otherwise a kernel is started (201), with `restarted: true` when it replaces one that died.",
    tag: "kernels",
    body: StartBodySchema,
    responses: {
      200: { description: "The caller's live kernel with that id.", body: KernelViewSchema },
      201: { description: "A new kernel.", body: KernelViewSchema },
    },
    errors: [...COMMON_ERRORS, 409, 429, 502],
    links: KERNEL_LINKS,
  },
  get: {
    summary: "Get a kernel",
    description: "The caller's kernel record, liveness checked: a kernel whose process is gone is `dead`.",
    tag: "kernels",
    params: KernelPathSchema,
    responses: { 200: { description: "The kernel.", body: KernelViewSchema } },
    errors: [...COMMON_ERRORS, 404, 502],
  },
  stop: {
    summary: "Stop a kernel",
    description: "Asks the kernel to shut down, ends its process if it lingers, and forgets it.",
    tag: "kernels",
    params: KernelPathSchema,
    responses: { 204: { description: "Stopped, or already gone." } },
    errors: [...COMMON_ERRORS, 502],
  },
  run: {
    summary: "Run code and wait for its result",
    description:
      "Runs the code in the caller's kernel. Runs on one kernel take turns; a run that waited too long for the one before it gets 409 KERNEL_BUSY. At `timeoutMs` the kernel is interrupted and the result says `timeout`.",
    tag: "runs",
    params: KernelPathSchema,
    body: RunBodySchema,
    responses: { 200: { description: "What the run displayed, and how it ended.", body: RunResultSchema } },
    errors: [...COMMON_ERRORS, 404, 409, 502],
  },
  enqueue: {
    summary: "Queue a run",
    description:
      "Checks the request, records the run as `queued` and sends it to the run queue. The same `runId` with the same code answers with that run again; with other code it is 409 RUN_CONFLICT.",
    tag: "runs",
    params: KernelPathSchema,
    body: EnqueueBodySchema,
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
  },
  result: {
    summary: "Get a queued run",
    description: "A queued run's status, and its RunResult (or why it has none) once it ended.",
    tag: "runs",
    params: RunPathSchema,
    responses: { 200: { description: "The run.", body: RunViewSchema } },
    errors: [...COMMON_ERRORS, 404],
  },
} as const satisfies Record<RouteFunction, RouteSchemas>;

/** What a named request schema is, and an example of it (the README's, for `npm start`). */
interface RequestComponent {
  id: string;
  description: string;
  examples: unknown[];
}

/** The named request schemas of `components.schemas`. */
const REQUEST_COMPONENTS: ReadonlyArray<readonly [z.ZodType, RequestComponent]> = [
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
const RESPONSE_COMPONENTS: ReadonlyArray<readonly [z.ZodType, string]> = [
  [KernelIdSchema, "KernelId"],
  [KernelViewSchema, "KernelView"],
  [RunErrorSchema, "RunError"],
  [RunResultSchema, "RunResult"],
  [RunViewSchema, "RunView"],
  [ErrorBodySchema, "Error"],
];

/** What the request fields mean; the rules themselves come from the schemas. */
const FIELD_DESCRIPTIONS: Record<string, Record<string, string>> = {
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

const SCHEMA_URI = (id: string) => `#/components/schemas/${id}`;

/** A top-level OpenAPI 3.1 document: the parts this API uses. */
export interface OpenApiDocument {
  openapi: string;
  info: {
    title: string;
    version: string;
    description: string;
    license: { name: string; identifier: string };
  };
  tags: Array<{ name: string; description: string }>;
  security: Array<Record<string, string[]>>;
  paths: Record<string, Record<string, OpenApiOperation>>;
  components: {
    schemas: Record<string, JsonSchema>;
    responses: Record<string, OpenApiResponse>;
    securitySchemes: Record<string, { type: string; scheme: string; description: string }>;
  };
}

/** One operation of {@link OpenApiDocument}. */
export interface OpenApiOperation {
  operationId: string;
  summary: string;
  description: string;
  tags: string[];
  parameters?: Array<{ name: string; in: "path"; required: true; schema: JsonSchema }>;
  requestBody?: { required: boolean; content: { "application/json": { schema: JsonSchema } } };
  responses: Record<string, OpenApiResponse | { $ref: string }>;
}

/** One response of {@link OpenApiDocument}. */
export interface OpenApiResponse {
  description: string;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
  content?: { "application/json": { schema: JsonSchema } };
  links?: Record<string, { operationId: string; parameters: Record<string, string> }>;
}

/** The name of the shared error response of each status, under `components.responses`. */
const ERROR_RESPONSE_NAMES: Readonly<Record<ErrorStatus, string>> = {
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
const ERROR_DESCRIPTIONS: Readonly<Record<ErrorStatus, string>> = {
  400: "Malformed JSON, missing, mistyped or unknown fields, a bad id, an out-of-range timeout, a reserved env name.",
  401: "No caller identity (on the dev server: an Authorization header that is not `Bearer <caller>`).",
  404: "No such kernel (or run) for this caller; another caller's looks exactly the same.",
  405: "The path exists but not with this method; `Allow` lists those it serves.",
  409: "The kernel is busy with another run, still starting, dead or stopped meanwhile, or a runId was reused with other code.",
  413: "The body, or the code in it, is over the limit; refused before any kernel work.",
  429: "The backend has no capacity for another kernel; retry after `Retry-After`.",
  500: "An internal error; logged in full, never detailed here.",
  502: "The backend or the kernel answered against the protocol.",
  503: "The backend, the store or the run queue cannot be reached, or the kernel could not be launched; retry after `Retry-After`.",
};

const RETRY_AFTER = {
  description: "Seconds to wait before trying again.",
  schema: { type: "integer", minimum: 0 },
} as const;

/** Every error code answered with `status`, in the order of the error handler's table. */
function codesOf(status: ErrorStatus): [ErrorCode, ...ErrorCode[]] {
  const codes = (Object.keys(STATUS_BY_CODE) as ErrorCode[]).filter(
    (code) => STATUS_BY_CODE[code] === status,
  );
  const [first, ...rest] = codes;
  if (first === undefined) throw new Error(`no error code maps to ${status}`);
  return [first, ...rest];
}

/** A status's entry in a table of this file; a status new to the error handler must be added there. */
function entryOf(table: Readonly<Record<ErrorStatus, string>>, status: ErrorStatus): string {
  const entry = table[status];
  if (entry === undefined)
    throw new Error(`the error status ${status} is not described in lib/http/openapi.ts`);
  return entry;
}

function errorResponseOf(status: ErrorStatus): OpenApiResponse {
  const headers: OpenApiResponse["headers"] = {};
  if (status === 409 || status === 429 || status === 503) headers["Retry-After"] = RETRY_AFTER;
  if (status === 405) {
    headers.Allow = { description: "The methods the path serves.", schema: { type: "string" } };
  }
  return {
    description: `${entryOf(ERROR_DESCRIPTIONS, status)} Codes: ${codesOf(status).join(", ")}.`,
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
    content: { "application/json": { schema: schemaOf(errorBodySchema(codesOf(status)), "output") } },
  };
}

/** Removes what only a standalone JSON Schema needs; OpenAPI 3.1 components are 2020-12 already. */
function tidy(schema: JsonSchema): JsonSchema {
  const { $schema: _schema, $id: _id, ...rest } = schema;
  return rest;
}

/** Adjusts zod's output where the zod schema cannot say everything (called for every node). */
function override({ jsonSchema, zodSchema }: { jsonSchema: JsonSchema; zodSchema: unknown }): void {
  // `format: date-time` says it all: zod's long pattern for it only makes the document hard to read.
  if (jsonSchema.format === "date-time") delete jsonSchema.pattern;
  // `.int()` bounds numbers to safe integers; JSON says nothing of the kind, so the bound is noise.
  if (jsonSchema.maximum === Number.MAX_SAFE_INTEGER) delete jsonSchema.maximum;
  if (jsonSchema.minimum === Number.MIN_SAFE_INTEGER) delete jsonSchema.minimum;
  // The variable count is checked in a refinement, which zod cannot express; same constant.
  if (zodSchema === CallerEnvSchema) jsonSchema.maxProperties = MAX_CALLER_ENV_ENTRIES;
  // `\0` (NUL) is ECMAScript and Python, but other pattern engines (Rust's, Schemathesis') refuse
  // it; `\x00` is the same character to all of them.
  if (typeof jsonSchema.pattern === "string") jsonSchema.pattern = spellNul(jsonSchema.pattern);
}

/**
 * Rewrites each unescaped `\0` (not followed by a digit) of a pattern as `\x00`: the same NUL to
 * ECMAScript, but one the Rust and Python engines of the document's readers (Schemathesis) accept.
 */
export function spellNul(pattern: string): string {
  return pattern.replace(/(?<!\\)((?:\\\\)*)\\0(?![0-9])/g, "$1\\x00");
}

/** The ids (and, for requests, what zod emits besides) of the named schemas. */
type Registry = z.core.$ZodRegistry<{ id: string; description?: string; examples?: unknown[] }>;

function registryOf(entries: ReadonlyArray<readonly [z.ZodType, { id: string }]>): Registry {
  const registry: Registry = z.registry<{ id: string; description?: string; examples?: unknown[] }>();
  for (const [schema, meta] of entries) registry.add(schema, meta);
  return registry;
}

/** Requests are described as zod accepts them (`io: "input"`), answers as the handlers build them. */
const REGISTRIES = {
  input: registryOf(REQUEST_COMPONENTS),
  output: registryOf(RESPONSE_COMPONENTS.map(([schema, id]) => [schema, { id }] as const)),
} as const;

/** The schema of one body or parameter: a `$ref` for a named component, else inline. */
function schemaOf(schema: z.ZodType, io: "input" | "output"): JsonSchema {
  const id = REGISTRIES[io].get(schema)?.id;
  if (id !== undefined) return { $ref: SCHEMA_URI(id) };
  return tidy(z.toJSONSchema(schema, { target: "draft-2020-12", io, override }));
}

/**
 * `components.schemas`: the request components (with their descriptions, from their registry) and
 * the response components (described by their own `.meta`). A schema in both must come out the same.
 */
function componentSchemas(): Record<string, JsonSchema> {
  const requests = z.toJSONSchema(REGISTRIES.input, {
    target: "draft-2020-12",
    io: "input",
    uri: SCHEMA_URI,
    metadata: REGISTRIES.input,
    override,
  }).schemas;
  const responses = z.toJSONSchema(REGISTRIES.output, {
    target: "draft-2020-12",
    io: "output",
    uri: SCHEMA_URI,
    override,
  }).schemas;
  const merged: Record<string, JsonSchema> = {};
  for (const [id, schema] of Object.entries(responses)) merged[id] = tidy(schema);
  for (const [id, schema] of Object.entries(requests)) {
    const described = tidy(schema);
    const fields = FIELD_DESCRIPTIONS[id];
    for (const [name, description] of Object.entries(fields ?? {})) {
      const property = described.properties?.[name];
      if (property === undefined || typeof property === "boolean")
        throw new Error(`${id} has no field ${name}`);
      property.description = description;
    }
    const other = merged[id];
    if (
      other !== undefined &&
      JSON.stringify(withoutAnnotations(other)) !== JSON.stringify(withoutAnnotations(described))
    ) {
      throw new Error(`schema ${id} differs between requests and responses`);
    }
    merged[id] = described;
  }
  if ("__shared" in merged) throw new Error("zod emitted shared definitions the document does not place");
  // Sorted by code unit, not locale: the file must come out the same on every machine.
  return Object.fromEntries(Object.entries(merged).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A schema without the annotations only the request side gives (its description and examples). */
function withoutAnnotations(schema: JsonSchema): JsonSchema {
  const { description: _description, examples: _examples, ...rest } = schema;
  return rest;
}

/** The path parameters of a route, each from its field of the route's params schema. */
function pathParametersOf(path: string, params: z.ZodObject): NonNullable<OpenApiOperation["parameters"]> {
  const names = [...path.matchAll(/\{(\w+)\}/g)].map((match) => match[1] ?? "");
  const declared = Object.keys(params.shape);
  if (JSON.stringify([...names].sort()) !== JSON.stringify([...declared].sort())) {
    throw new Error(`${path} takes {${names.join(", ")}} but its schema declares ${declared.join(", ")}`);
  }
  return names.map((name) => {
    const field = params.shape[name];
    if (field === undefined) throw new Error(`no schema for {${name}} of ${path}`);
    return { name, in: "path" as const, required: true as const, schema: schemaOf(field, "input") };
  });
}

/** Every status the error handler can answer with, ascending. */
function errorStatuses(): ErrorStatus[] {
  return [...new Set(Object.values(STATUS_BY_CODE))].sort((a, b) => a - b);
}

function operationOf(route: Route): OpenApiOperation {
  const spec: RouteSchemas = ROUTE_SCHEMAS[route.function];
  const responses: OpenApiOperation["responses"] = {};
  for (const [status, success] of Object.entries(spec.responses)) {
    responses[status] = {
      description: success.description,
      ...(success.body
        ? { content: { "application/json": { schema: schemaOf(success.body, "output") } } }
        : {}),
      ...(spec.links && success.body ? { links: spec.links } : {}),
    };
  }
  for (const status of [...new Set(spec.errors)].sort((a, b) => a - b)) {
    responses[String(status)] = { $ref: `#/components/responses/${entryOf(ERROR_RESPONSE_NAMES, status)}` };
  }
  return {
    operationId: route.function,
    summary: spec.summary,
    description: spec.description,
    tags: [spec.tag],
    ...(spec.params ? { parameters: pathParametersOf(route.path, spec.params) } : {}),
    ...(spec.body
      ? {
          requestBody: {
            // A body every field of which is optional may be left out (it is read as `{}`).
            required: !spec.body.safeParse({}).success,
            content: { "application/json": { schema: schemaOf(spec.body, "input") } },
          },
        }
      : {}),
    responses,
  };
}

/** Builds the document afresh from `ROUTES` and the schemas. */
export function buildOpenApiDocument(): OpenApiDocument {
  const paths: OpenApiDocument["paths"] = {};
  for (const route of ROUTES) {
    const methods = paths[route.path] ?? {};
    methods[route.method.toLowerCase()] = operationOf(route);
    paths[route.path] = methods;
  }
  return {
    openapi: "3.1.1",
    info: {
      title: "pybox-serverless",
      version: PACKAGE_VERSION,
      description:
        "Start, run and stop IPython kernels over HTTP. A caller sees only its own kernels: another caller's kernel is answered exactly like one that does not exist. Besides each operation's own errors, an unknown path is 404 NOT_FOUND and a known path with another method is 405 METHOD_NOT_ALLOWED (`#/components/responses/MethodNotAllowed`).",
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
    },
    tags: [
      { name: "kernels", description: "Start, inspect and stop kernels." },
      { name: "runs", description: "Run code, synchronously or through the run queue." },
    ],
    security: [{ bearerAuth: [] }],
    paths,
    components: {
      schemas: componentSchemas(),
      responses: Object.fromEntries(
        errorStatuses().map((status) => [entryOf(ERROR_RESPONSE_NAMES, status), errorResponseOf(status)]),
      ),
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          description:
            "Deployed, the caller is whoever API Gateway's authorizer says (a JWT's `sub`, an IAM caller's ARN, a Lambda authorizer's principal). Under `npm start` the token's text is the caller (`Authorization: Bearer alice`), and no header means the caller `local`.",
        },
      },
    },
  };
}

let cached: OpenApiDocument | undefined;

/** The document, built once per process (the dev server serves it on `GET /openapi.json`). */
export function openApiDocument(): OpenApiDocument {
  cached ??= buildOpenApiDocument();
  return cached;
}

/** The document as `openapi.json` holds it. */
export function renderOpenApi(document: OpenApiDocument = openApiDocument()): string {
  return `${JSON.stringify(document, null, 2)}\n`;
}
