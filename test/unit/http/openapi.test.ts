import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, it, mock } from "node:test";
import type { APIGatewayProxyEventV2, Context } from "aws-lambda";
import type * as z from "zod";
import { loadConfig } from "../../../lib/config.ts";
import { CwdSchema, KernelIdSchema, KernelViewSchema } from "../../../lib/core/kernel.ts";
import { RunResultSchema } from "../../../lib/core/run-result.ts";
import { RunViewSchema } from "../../../lib/core/run-view.ts";
import {
  BackendError,
  CapacityError,
  KernelBusyError,
  MethodNotAllowedError,
  NotFoundError,
  QueueUnavailableError,
  RunConflictError,
  UnauthenticatedError,
  ValidationError,
} from "../../../lib/errors.ts";
import { errorResponse, STATUS_BY_CODE } from "../../../lib/http/error-handler.ts";
import { httpFunction } from "../../../lib/http/handler.ts";
import {
  buildOpenApiDocument,
  type OpenApiDocument,
  type OpenApiResponse,
  renderOpenApi,
  spellNul,
} from "../../../lib/http/openapi.ts";
import { ErrorBodySchema } from "../../../lib/http/response-schemas.ts";
import { ROUTES } from "../../../lib/http/routes.ts";
import { RunCollector } from "../../../lib/jupyter/run-collector.ts";
import { logger } from "../../../lib/logger.ts";
import type { Runtime } from "../../../lib/runtime.ts";

const ROOT = join(import.meta.dirname, "..", "..", "..");

/** A catalogue path as the OpenAPI document spells it (`{path+}` is `{path}`). */
function documented(path: string): string {
  return path.replace(/\{(\w+)\+\}/g, "{$1}");
}

/** Every `$ref` in a JSON value, with where it was found. */
function refsIn(value: unknown, at = "#"): Array<{ ref: string; at: string }> {
  if (Array.isArray(value)) return value.flatMap((item, i) => refsIn(item, `${at}/${i}`));
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, item]) =>
    key === "$ref" && typeof item === "string" ? [{ ref: item, at }] : refsIn(item, `${at}/${key}`),
  );
}

/** What a local JSON pointer (`#/a/b`) points at in `document`, or undefined. */
function resolve(document: unknown, ref: string): unknown {
  let node: unknown = document;
  for (const part of ref.replace(/^#\//, "").split("/")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return node;
}

/** A response of the document, following a `$ref` to `components.responses`. */
function responseOf(
  document: OpenApiDocument,
  response: OpenApiResponse | { $ref: string },
): OpenApiResponse {
  if (!("$ref" in response)) return response;
  const target = resolve(document, response.$ref);
  assert.ok(target, `${response.$ref} resolves`);
  return target as OpenApiResponse;
}

/** The body of an HTTP response as the handlers write it. */
function bodyOf(response: { body?: string }): unknown {
  return JSON.parse(response.body ?? "");
}

/** An API Gateway (payload 2.0) event for a handler, with the dev server's caller. */
function eventFor(pathParameters: Record<string, string>, body: string | undefined): APIGatewayProxyEventV2 {
  return {
    version: "2.0",
    routeKey: "test",
    rawPath: "/",
    rawQueryString: "",
    headers: {},
    pathParameters,
    body,
    isBase64Encoded: false,
    requestContext: { authorizer: { lambda: { principalId: "openapi-test" } } },
  } as unknown as APIGatewayProxyEventV2;
}

/** Counts a schema's `safeParse` calls (zod binds its methods on first access: bind, then spy). */
function spyOnSafeParse(schema: z.ZodType) {
  void schema.safeParse;
  return mock.method(schema, "safeParse");
}

const CONTEXT = { getRemainingTimeInMillis: () => 60_000 } as unknown as Context;

describe("openapi", () => {
  afterEach(() => {
    mock.restoreAll();
  });

  describe("the committed openapi.json", () => {
    it("is the document the schemas generate (run `npm run openapi` after changing them)", async () => {
      // Arrange
      const committed: unknown = JSON.parse(await readFile(join(ROOT, "openapi.json"), "utf8"));

      // Act
      const generated: unknown = JSON.parse(renderOpenApi(buildOpenApiDocument()));

      // Assess
      assert.deepEqual(committed, generated, "openapi.json is stale: run `npm run openapi`");
    });
  });

  describe("the document", () => {
    const document = buildOpenApiDocument();

    it("is OpenAPI 3.1 with a title, a version and a bearer scheme", () => {
      // Assess
      assert.match(document.openapi, /^3\.1\.\d+$/);
      assert.equal(typeof document.info.title, "string");
      assert.match(document.info.version, /^\d+\.\d+\.\d+/);
      assert.deepEqual(document.security, [{ bearerAuth: [] }]);
      assert.equal(document.components.securitySchemes.bearerAuth?.scheme, "bearer");
    });

    it("has every route of ROUTES, and nothing else", () => {
      // Act
      const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
        Object.entries(methods).map(
          ([method, operation]) => `${method.toUpperCase()} ${path} ${operation.operationId}`,
        ),
      );

      // Assess
      assert.deepEqual(
        operations.sort(),
        ROUTES.map((route) => `${route.method} ${documented(route.path)} ${route.operationId}`).sort(),
      );
    });

    it("declares each path parameter once, required, and nothing that is not in the path", () => {
      for (const route of ROUTES) {
        // Arrange
        const operation = document.paths[documented(route.path)]?.[route.method.toLowerCase()];
        assert.ok(operation, `${route.method} ${route.path}`);

        // Act
        const declared = (operation.parameters ?? [])
          .filter((parameter) => parameter.in === "path")
          .map((parameter) => {
            assert.equal(parameter.required, true);
            return parameter.name;
          });

        // Assess
        const inPath = [...route.path.matchAll(/\{(\w+)\+?\}/g)].map((match) => match[1]);
        assert.deepEqual(declared, inPath, `${route.method} ${route.path}`);
      }
    });

    it("answers every operation with a success and every error status it lists", () => {
      for (const route of ROUTES) {
        // Arrange
        const operation = document.paths[documented(route.path)]?.[route.method.toLowerCase()];
        assert.ok(operation);
        const spec = route;

        // Act
        const statuses = Object.keys(operation.responses).map(Number);

        // Assess
        assert.ok(
          statuses.some((status) => status >= 200 && status < 300),
          `${route.function} has a success`,
        );
        for (const status of spec.errors) assert.ok(statuses.includes(status), `${route.function} ${status}`);
        for (const status of [400, 401, 500])
          assert.ok(statuses.includes(status), `${route.function} ${status}`);
      }
    });

    it("has a response for every status the error handler can give, with exactly its codes", () => {
      for (const status of new Set(Object.values(STATUS_BY_CODE))) {
        // Arrange
        const codes = Object.entries(STATUS_BY_CODE)
          .filter(([, mapped]) => mapped === status)
          .map(([code]) => code);

        // Act
        const response = Object.values(document.components.responses).find((candidate) =>
          candidate.description.includes(`Codes: ${codes.join(", ")}.`),
        );

        // Assess
        assert.ok(response, `a response for ${status}`);
        const schema = response.content?.["application/json"]?.schema;
        assert.deepEqual(resolve(schema, "#/properties/error/properties/code/enum"), codes);
      }
    });

    it("resolves every $ref", () => {
      // Act
      const refs = refsIn(document);

      // Assess
      assert.ok(refs.length > 0);
      for (const { ref, at } of refs) {
        assert.match(ref, /^#\/components\/(schemas|responses)\//, at);
        assert.notEqual(resolve(document, ref), undefined, `${ref} at ${at}`);
      }
    });

    it("needs a body for runs, but not for a start (an absent body is `{}`)", () => {
      // Assess
      assert.equal(document.paths["/kernels"]?.post?.requestBody?.required, false);
      assert.equal(document.paths["/kernels/{kernelId}/run"]?.post?.requestBody?.required, true);
      assert.equal(document.paths["/kernels/{kernelId}/runs"]?.post?.requestBody?.required, true);
    });

    it("has patterns that mean what the zod schemas check", () => {
      // Arrange
      const schemas = document.components.schemas;
      const kernelId = new RegExp(String(schemas.KernelId?.pattern), "u");
      const cwdSchema = schemas.StartBody?.properties?.cwd;
      assert.ok(cwdSchema && typeof cwdSchema === "object");
      const cwd = new RegExp(String(cwdSchema.pattern), "u");
      const ids = [
        "demo",
        "a",
        "A.b_c-1",
        "a".repeat(128),
        "a".repeat(129),
        "",
        "-a",
        ".a",
        "a/b",
        "a b",
        "é",
      ];
      const paths = ["/", "/tmp/work", "/a\0b", "relative", "", "/é"];

      // Assess
      for (const id of ids) assert.equal(kernelId.test(id), KernelIdSchema.safeParse(id).success, id);
      for (const path of paths) assert.equal(cwd.test(path), CwdSchema.safeParse(path).success, path);
    });
  });

  describe("the route catalogue", () => {
    it("names an entry file for every function, exporting its handler", async () => {
      for (const route of ROUTES) {
        // Act
        const source = await readFile(join(ROOT, "functions", `${route.function}.ts`), "utf8");

        // Assess
        assert.match(source, new RegExp(`httpFunctionOf\\("${route.function}"`), route.function);
        assert.match(source, /export const handler = /, route.function);
      }
    });

    for (const route of ROUTES) {
      it(`validates ${route.function}'s requests with the very schemas the document shows`, async () => {
        // Arrange: a runtime whose every service throws, for the request must be refused before any.
        const config = loadConfig({ PYBOX_STATE_DIR: join(ROOT, ".pybox-unused") });
        const runtime = new Proxy({ config } as Runtime, {
          get: (target, key) => {
            if (key === "config") return target.config;
            throw new Error(`the runtime's ${String(key)} was used before validation`);
          },
        });
        const handler = httpFunction(route as Parameters<typeof httpFunction>[0], runtime);
        const params = route.params ? spyOnSafeParse(route.params) : undefined;
        const body = "body" in route && route.body ? spyOnSafeParse(route.body) : undefined;
        // With a body, valid ids and a body with an unknown field (so both schemas are used);
        // without, an invalid id.
        const event = body
          ? eventFor({ kernelId: "k1" }, JSON.stringify({ code: "1", unknown: true }))
          : eventFor({ kernelId: "-k1", runId: "r1" }, undefined);

        // Act
        const response = await handler(event, CONTEXT);

        // Assess
        assert.equal(params?.mock.callCount() ?? 1, 1, "the params schema is the one validated with");
        assert.equal(body?.mock.callCount() ?? 1, 1, "the body schema is the one validated with");
        assert.equal(response.statusCode, 400);
      });
    }
  });

  describe("response schemas", () => {
    const instant = "2026-11-26T08:00:00.000Z";

    it("accept what the service answers with", () => {
      // Arrange
      const collector = new RunCollector({ maxOutputBytes: 1_000, maxEntryBytes: 1_000 });
      const fresh = collector.result(12);
      const samples: ReadonlyArray<[z.ZodType, unknown]> = [
        [
          KernelViewSchema,
          { kernelId: "demo", backend: "local", state: "idle", createdAt: instant, lastActivityAt: instant },
        ],
        [
          KernelViewSchema,
          {
            kernelId: "3f0c6c1e-2b1a-4c7e-9d7a-0f6b8c1d2e3f",
            backend: "cluster",
            state: "starting",
            createdAt: instant,
            lastActivityAt: instant,
            restarted: true,
          },
        ],
        [RunResultSchema, fresh],
        [RunResultSchema, collector.result(30_001, 30_000)],
        [
          RunResultSchema,
          {
            status: "error",
            data: [{ "text/plain": "1\n" }, { "image/png": "iVBORw0KGgo=", "text/plain": "<Figure>" }],
            error: { ename: "ZeroDivisionError", evalue: "division by zero", traceback: ["..."] },
            executionCount: 3,
            durationMs: 4,
            truncated: true,
            artifacts: [
              { path: "chart.png", size: 20_731, mtime: instant },
              { path: "out/data.csv", size: 0, mtime: instant },
            ],
            artifactsTruncated: true,
            restarted: true,
          },
        ],
        [RunViewSchema, { runId: "r1", kernelId: "demo", status: "queued", createdAt: instant }],
        [
          RunViewSchema,
          {
            runId: "r1",
            kernelId: "demo",
            status: "ok",
            createdAt: instant,
            startedAt: instant,
            finishedAt: instant,
            result: fresh,
          },
        ],
        [
          RunViewSchema,
          {
            runId: "r1",
            kernelId: "demo",
            status: "error",
            createdAt: instant,
            finishedAt: instant,
            error: { code: "RUN_LOST", message: "its invocation ended" },
          },
        ],
      ];

      // Assess
      for (const [schema, sample] of samples) {
        const parsed = schema.safeParse(sample);
        assert.ok(parsed.success, `${JSON.stringify(sample)}: ${parsed.error?.message}`);
      }
    });

    it("refuse what the service never answers with", () => {
      // Arrange
      const samples: ReadonlyArray<[z.ZodType, unknown]> = [
        [
          KernelViewSchema,
          { kernelId: "demo", backend: "local", state: "ready", createdAt: instant, lastActivityAt: instant },
        ],
        [
          KernelViewSchema,
          {
            kernelId: "demo",
            backend: "local",
            state: "idle",
            createdAt: "yesterday",
            lastActivityAt: instant,
          },
        ],
        [RunResultSchema, { status: "ok", data: [], error: null, executionCount: 1, durationMs: 1 }],
        [
          RunResultSchema,
          {
            status: "ok",
            data: [],
            error: null,
            executionCount: 1,
            durationMs: 1,
            truncated: false,
            artifacts: [{ path: "chart.png", size: -1, mtime: instant }],
          },
        ],
        [RunViewSchema, { runId: "r1", kernelId: "demo", status: "done", createdAt: instant }],
        [
          RunViewSchema,
          { runId: "r1", kernelId: "demo", status: "queued", createdAt: instant, owner: "alice" },
        ],
      ];

      // Assess
      for (const [schema, sample] of samples) {
        assert.equal(schema.safeParse(sample).success, false, JSON.stringify(sample));
      }
    });

    it("accept every error body the error handler writes", () => {
      // Arrange
      mock.method(logger, "error", () => undefined);
      const errors = [
        new ValidationError("invalid body.code: required", [{ path: "body.code", message: "required" }]),
        new UnauthenticatedError("no caller"),
        new NotFoundError("no kernel 'demo'"),
        new MethodNotAllowedError("PUT is not allowed on /kernels", ["POST"]),
        new KernelBusyError("kernel 'demo' is running another cell", { retryAfterSeconds: 1 }),
        new RunConflictError("run 'r1' was already queued with different code"),
        new CapacityError("at most 10 kernels"),
        new QueueUnavailableError("SQS said no"),
        new BackendError("bad reply"),
        new Error("a bug"),
      ];

      for (const error of errors) {
        // Act
        const response = errorResponse(error);

        // Assess
        const parsed = ErrorBodySchema.safeParse(bodyOf(response));
        assert.ok(parsed.success, `${error.name}: ${parsed.error?.message}`);
      }
    });

    it("describe the headers the error handler sets on retryable answers", () => {
      // Arrange
      const document = buildOpenApiDocument();

      for (const status of [409, 429, 503]) {
        // Act
        const response = Object.values(document.paths)
          .flatMap((methods) => Object.values(methods))
          .map((operation) => operation.responses[String(status)])
          .find((candidate) => candidate !== undefined);

        // Assess
        assert.ok(response, `some operation answers ${status}`);
        assert.ok(responseOf(document, response).headers?.["Retry-After"], `Retry-After on ${status}`);
      }
    });
  });

  describe("spellNul", () => {
    for (const [pattern, spelled] of [
      ["^\\/[^\\0]*$", "^\\/[^\\x00]*$"],
      ["\\\\0", "\\\\0"],
      ["\\\\\\0", "\\\\\\x00"],
      ["\\01", "\\01"],
      ["a0", "a0"],
    ] as const) {
      it(`spells ${pattern} as ${spelled}`, () => {
        // Assess
        assert.equal(spellNul(pattern), spelled);
      });
    }
  });
});
