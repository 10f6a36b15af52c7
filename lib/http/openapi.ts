import * as z from "zod";
import packageJson from "../../package.json" with { type: "json" };
import { MAX_CALLER_ENV_ENTRIES } from "../core/caller-env.ts";
import { CallerEnvSchema } from "../core/kernel.ts";
import type { ErrorCode } from "../errors.ts";
import { STATUS_BY_CODE } from "./error-handler.ts";
import {
  ERROR_DESCRIPTIONS,
  ERROR_RESPONSE_NAMES,
  FIELD_DESCRIPTIONS,
  REQUEST_COMPONENTS,
  RESPONSE_COMPONENTS,
} from "./openapi-components.ts";
import { errorBodySchema } from "./response-schemas.ts";
import type { ErrorStatus } from "./route-spec.ts";
import { ROUTES, type Route } from "./routes.ts";

/**
 * The OpenAPI 3.1 description of the HTTP API, built from the route catalogue and the very zod
 * schemas the handlers validate with and answer with, by zod's own `z.toJSONSchema`. Nothing here
 * restates a rule: a new route, or a schema changed, changes the document (and `openapi.json` must
 * be regenerated: `npm run openapi`).
 */

/** The API's version is the package's. */
const PACKAGE_VERSION: string = packageJson.version;

/** A JSON Schema as zod emits it. */
type JsonSchema = z.core.JSONSchema.BaseSchema;

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
  parameters?: Array<{
    name: string;
    in: "path" | "query" | "header";
    required: boolean;
    description?: string;
    schema: JsonSchema;
  }>;
  requestBody?: { required: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, OpenApiResponse | { $ref: string }>;
}

/** One response of {@link OpenApiDocument}. */
export interface OpenApiResponse {
  description: string;
  headers?: Record<string, { description: string; schema: JsonSchema }>;
  content?: Record<string, { schema: JsonSchema }>;
  links?: Record<string, { operationId: string; parameters: Record<string, string> }>;
}

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
  const names = [...path.matchAll(/\{(\w+)\+?\}/g)].map((match) => match[1] ?? "");
  const declared = Object.keys(params.shape);
  if (JSON.stringify([...names].sort()) !== JSON.stringify([...declared].sort())) {
    throw new Error(`${path} takes {${names.join(", ")}} but its schema declares ${declared.join(", ")}`);
  }
  return names.map((name) => {
    const field = params.shape[name];
    if (field === undefined) throw new Error(`no schema for {${name}} of ${path}`);
    return { name, in: "path" as const, required: true, schema: schemaOf(field, "input") };
  });
}

/** Query parameters, each optional with its default (the query schema's fields). */
function queryParametersOf(query: z.ZodObject): NonNullable<OpenApiOperation["parameters"]> {
  return Object.entries(query.shape).map(([name, field]) => ({
    name,
    in: "query" as const,
    required: false,
    schema: schemaOf(field as z.ZodType, "input"),
  }));
}

/** Request headers a route reads, each optional. */
function headerParametersOf(
  headers: Readonly<Record<string, { description: string; pattern: RegExp }>>,
): NonNullable<OpenApiOperation["parameters"]> {
  return Object.entries(headers).map(([name, { description, pattern }]) => ({
    name,
    in: "header" as const,
    required: false,
    description,
    schema: { type: "string", pattern: pattern.source },
  }));
}

/** A body of bytes: any media type, as OpenAPI 3.1 describes raw content. */
const BINARY_CONTENT: Record<string, { schema: JsonSchema }> = {
  "application/octet-stream": { schema: { type: "string", contentMediaType: "application/octet-stream" } },
};

/** The OpenAPI spelling of a catalogue path: `{path+}` (API Gateway's greedy parameter) is `{path}`. */
function documentedPath(path: string): string {
  return path.replace(/\{(\w+)\+\}/g, "{$1}");
}

/** Every status the error handler can answer with, ascending. */
function errorStatuses(): ErrorStatus[] {
  return [...new Set(Object.values(STATUS_BY_CODE))].sort((a, b) => a - b);
}

function operationOf(spec: Route): OpenApiOperation {
  const parameters = [
    ...(spec.params ? pathParametersOf(spec.path, spec.params) : []),
    ...("query" in spec && spec.query ? queryParametersOf(spec.query) : []),
    ...("requestHeaders" in spec && spec.requestHeaders ? headerParametersOf(spec.requestHeaders) : []),
  ];
  const responses: OpenApiOperation["responses"] = {};
  for (const [status, success] of Object.entries(spec.responses)) {
    const headers = Object.entries(success.headers ?? {}).map(
      ([name, description]) => [name, { description, schema: { type: "string" } }] as const,
    );
    responses[status] = {
      description: success.description,
      ...(headers.length > 0 ? { headers: Object.fromEntries(headers) } : {}),
      ...(success.body === "binary"
        ? { content: BINARY_CONTENT }
        : success.body
          ? { content: { "application/json": { schema: schemaOf(success.body, "output") } } }
          : {}),
      ...(spec.links && success.body ? { links: spec.links } : {}),
    };
  }
  for (const status of [...new Set(spec.errors)].sort((a, b) => a - b)) {
    responses[String(status)] = { $ref: `#/components/responses/${entryOf(ERROR_RESPONSE_NAMES, status)}` };
  }
  return {
    operationId: spec.operationId,
    summary: spec.summary,
    description: spec.description,
    tags: [spec.tag],
    ...(parameters.length > 0 ? { parameters } : {}),
    ...("binaryBody" in spec && spec.binaryBody
      ? { requestBody: { required: false, content: BINARY_CONTENT } }
      : {}),
    ...("body" in spec && spec.body
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
    const path = documentedPath(route.path);
    const methods = paths[path] ?? {};
    methods[route.method.toLowerCase()] = operationOf(route);
    paths[path] = methods;
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
      { name: "files", description: "Files in and out of a kernel's working directory." },
    ],
    // Every route is `auth: "caller"` (see the catalogue): one scheme for all.
    security: ROUTES.every((route) => route.auth === "caller") ? [{ bearerAuth: [] }] : [],
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
