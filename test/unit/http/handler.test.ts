import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import type {
  APIGatewayEventRequestContextV2,
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
} from "aws-lambda";
import * as z from "zod";
import { NotFoundError } from "../../../lib/errors.ts";
import { type HttpLambda, httpHandler } from "../../../lib/http/handler.ts";
import { json } from "../../../lib/http/responses.ts";
import type { HttpRequest } from "../../../lib/http/route-spec.ts";
import { KernelPathSchema, RunBodySchema, StartBodySchema } from "../../../lib/http/schemas.ts";
import { logger } from "../../../lib/logger.ts";

const OWNER = "agent-7";
const CONTEXT = { functionName: "pybox-run", awsRequestId: "req-1" } as Context;

interface EventOptions {
  body?: string;
  isBase64Encoded?: boolean;
  pathParameters?: Record<string, string>;
  headers?: Record<string, string>;
  /** The authorizer context; `null` leaves it out. */
  authorizer?: unknown;
}

/** An HTTP API (payload 2.0) event as API Gateway delivers it to the function. */
function event(options: EventOptions = {}): APIGatewayProxyEventV2 {
  const requestContext: APIGatewayEventRequestContextV2 & { authorizer?: unknown } = {
    accountId: "123456789012",
    apiId: "api",
    domainName: "api.example.com",
    domainPrefix: "api",
    http: {
      method: "POST",
      path: "/kernels/k1/run",
      protocol: "HTTP/1.1",
      sourceIp: "203.0.113.9",
      userAgent: "unit-test",
    },
    requestId: "req-1",
    routeKey: "POST /kernels/{kernelId}/run",
    stage: "$default",
    time: "01/Jan/2024:00:00:00 +0000",
    timeEpoch: 1_704_067_200_000,
    ...(options.authorizer === null
      ? {}
      : { authorizer: options.authorizer ?? { lambda: { principalId: OWNER } } }),
  };
  return {
    version: "2.0",
    routeKey: "POST /kernels/{kernelId}/run",
    rawPath: "/kernels/k1/run",
    rawQueryString: "",
    headers: { "content-type": "application/json", ...options.headers },
    requestContext,
    isBase64Encoded: options.isBase64Encoded ?? false,
    ...(options.pathParameters === undefined ? {} : { pathParameters: options.pathParameters }),
    ...(options.body === undefined ? {} : { body: options.body }),
  };
}

interface ErrorBody {
  error: { code: string; message: string; details?: Array<{ path: string; message: string }> };
}

function errorOf(response: APIGatewayProxyStructuredResultV2): ErrorBody {
  return JSON.parse(response.body ?? "") as ErrorBody;
}

/** A route whose handler records what it got and echoes it back as the response body. */
function echoRoute<P extends z.ZodType, B extends z.ZodType>(schemas: {
  params?: P;
  body?: B;
  maxBodyBytes?: number;
}) {
  const calls: Array<Pick<HttpRequest<z.infer<P>, z.infer<B>>, "owner" | "params" | "body">> = [];
  const lambda: HttpLambda = httpHandler({
    ...schemas,
    handle: async ({ owner, params, body }) => {
      const request = { owner, params, body };
      calls.push(request);
      return json(200, request);
    },
  });
  return { lambda, calls };
}

/** A route whose handler throws `error`. */
function throwingRoute(error: unknown): HttpLambda {
  return httpHandler({
    params: KernelPathSchema,
    handle: async () => {
      throw error;
    },
  });
}

describe("handler", () => {
  beforeEach(() => {
    mock.method(logger, "error", () => undefined);
  });
  afterEach(() => {
    mock.restoreAll();
  });

  describe("httpHandler", () => {
    it("hands the caller, path parameters and body to the route's handler", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: KernelPathSchema, body: RunBodySchema });

      // Act
      const response = await lambda(
        event({ pathParameters: { kernelId: "k1" }, body: '{"code":"1 + 1","timeoutMs":500}' }),
        CONTEXT,
      );

      // Assess
      assert.equal(response.statusCode, 200);
      assert.deepEqual(calls, [
        { owner: OWNER, params: { kernelId: "k1" }, body: { code: "1 + 1", timeoutMs: 500 } },
      ]);
      assert.deepEqual(JSON.parse(response.body ?? ""), calls[0]);
    });

    it("returns the handler's own response unchanged", async () => {
      // Prepare
      const lambda = httpHandler({
        handle: async () => json(201, { kernelId: "k1" }, { location: "/kernels/k1" }),
      });

      // Act
      const response = await lambda(event(), CONTEXT);

      // Assess
      assert.deepEqual(response, {
        statusCode: 201,
        headers: { "content-type": "application/json", "cache-control": "no-store", location: "/kernels/k1" },
        body: '{"kernelId":"k1"}',
      });
    });

    it("decodes a base64 body", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: KernelPathSchema, body: RunBodySchema });
      const encoded = Buffer.from('{"code":"print(\'héllo\')"}', "utf8").toString("base64");

      // Act
      const response = await lambda(
        event({ pathParameters: { kernelId: "k1" }, body: encoded, isBase64Encoded: true }),
        CONTEXT,
      );

      // Assess
      assert.equal(response.statusCode, 200);
      assert.deepEqual(calls[0]?.body, { code: "print('héllo')" });
    });

    it("parses the body as JSON whatever its content-type says", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: StartBodySchema });

      // Act
      const response = await lambda(
        event({
          body: '{"kernelId":"k2"}',
          headers: { "content-type": "application/x-www-form-urlencoded" },
        }),
        CONTEXT,
      );

      // Assess
      assert.equal(response.statusCode, 200);
      assert.deepEqual(calls[0]?.body, { kernelId: "k2" });
    });

    for (const [name, body] of [
      ["an empty", ""],
      ["a missing", undefined],
    ] as const) {
      it(`treats ${name} body as {}`, async () => {
        // Prepare
        const { lambda, calls } = echoRoute({ body: StartBodySchema });

        // Act
        const response = await lambda(event(body === undefined ? {} : { body }), CONTEXT);

        // Assess
        assert.equal(response.statusCode, 200);
        assert.deepEqual(calls, [{ owner: OWNER, params: undefined, body: {} }]);
      });
    }

    it("rejects a body that is not JSON with 400", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: StartBodySchema });

      // Act
      const response = await lambda(event({ body: "{kernelId: k1" }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 400);
      assert.deepEqual(errorOf(response), {
        error: { code: "INVALID_REQUEST", message: "request body is not valid JSON" },
      });
      assert.equal(calls.length, 0);
    });

    it("rejects a body the schema refuses with 400 and the failing fields", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: KernelPathSchema, body: RunBodySchema });

      // Act
      const response = await lambda(
        event({ pathParameters: { kernelId: "k1" }, body: '{"timeoutMs":100,"extra":true}' }),
        CONTEXT,
      );

      // Assess
      assert.equal(response.statusCode, 400);
      const { error } = errorOf(response);
      assert.equal(error.code, "INVALID_REQUEST");
      assert.equal(error.message, "invalid body.code: code is required and must be a string");
      assert.deepEqual(error.details?.[0], {
        path: "body.code",
        message: "code is required and must be a string",
      });
      assert.deepEqual(
        error.details?.map((detail) => detail.path),
        ["body.code", "body"],
      );
      assert.equal(calls.length, 0);
    });

    it("rejects a kernel id the schema refuses with 400 naming the path parameter", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: KernelPathSchema });

      // Act
      const response = await lambda(event({ pathParameters: { kernelId: "..%2Fetc" } }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 400);
      assert.deepEqual(errorOf(response), {
        error: {
          code: "INVALID_REQUEST",
          message:
            "invalid path.kernelId: must be 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit",
          details: [
            {
              path: "path.kernelId",
              message: "must be 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit",
            },
          ],
        },
      });
      assert.equal(calls.length, 0);
    });

    it("rejects missing path parameters with 400", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: KernelPathSchema });

      // Act
      const response = await lambda(event(), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 400);
      assert.equal(errorOf(response).error.details?.[0]?.path, "path.kernelId");
      assert.equal(calls.length, 0);
    });

    it("accepts a body of exactly maxBodyBytes", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: RunBodySchema, maxBodyBytes: 20 });
      const body = JSON.stringify({ code: "x".repeat(9) });
      assert.equal(Buffer.byteLength(body), 20);

      // Act
      const response = await lambda(event({ body }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 200);
      assert.equal(calls.length, 1);
    });

    it("rejects a body over maxBodyBytes with 413 before calling the handler", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: RunBodySchema, maxBodyBytes: 20 });
      const body = JSON.stringify({ code: "x".repeat(10) });

      // Act
      const response = await lambda(event({ body }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 413);
      assert.deepEqual(errorOf(response), {
        error: { code: "PAYLOAD_TOO_LARGE", message: "request body exceeds 20 bytes" },
      });
      assert.equal(calls.length, 0);
    });

    it("counts the body's size in UTF-8 bytes, not characters", async () => {
      // Prepare: 18 characters, 26 bytes
      const { lambda, calls } = echoRoute({ body: RunBodySchema, maxBodyBytes: 20 });
      const body = JSON.stringify({ code: "éééééééé" });

      // Act
      const response = await lambda(event({ body }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 413);
      assert.equal(calls.length, 0);
    });

    it("rejects an over-sized base64 body with 413", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: RunBodySchema, maxBodyBytes: 20 });
      const body = Buffer.from(JSON.stringify({ code: "x".repeat(100) })).toString("base64");

      // Act
      const response = await lambda(event({ body, isBase64Encoded: true }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 413);
      assert.equal(calls.length, 0);
    });

    it("caps bodies at 64 KiB when the route sets no limit", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: RunBodySchema });
      const fits = JSON.stringify({ code: "x".repeat(64 * 1024 - 11) });
      const tooBig = JSON.stringify({ code: "x".repeat(64 * 1024 - 10) });

      // Act
      const accepted = await lambda(event({ body: fits }), CONTEXT);
      const refused = await lambda(event({ body: tooBig }), CONTEXT);

      // Assess
      assert.equal(accepted.statusCode, 200);
      assert.equal(refused.statusCode, 413);
      assert.equal(calls.length, 1);
    });

    it("ignores the body of a route that declares none", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: KernelPathSchema });

      // Act
      const response = await lambda(event({ pathParameters: { kernelId: "k1" }, body: "not json" }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 200);
      assert.deepEqual(calls, [{ owner: OWNER, params: { kernelId: "k1" }, body: undefined }]);
    });

    it("answers 401 without a caller identity and does not call the handler", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: KernelPathSchema, body: RunBodySchema });

      // Act
      const response = await lambda(
        event({ authorizer: null, pathParameters: { kernelId: "k1" }, body: '{"code":"1"}' }),
        CONTEXT,
      );

      // Assess
      assert.equal(response.statusCode, 401);
      assert.equal(errorOf(response).error.code, "UNAUTHENTICATED");
      assert.equal(calls.length, 0);
    });

    it("answers 401 when the only identity is a header the caller set", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: StartBodySchema });

      // Act
      const response = await lambda(
        event({ authorizer: null, headers: { "x-owner": "mallory", "x-pybox-owner": "mallory" } }),
        CONTEXT,
      );

      // Assess
      assert.equal(response.statusCode, 401);
      assert.equal(errorOf(response).error.code, "UNAUTHENTICATED");
      assert.equal(calls.length, 0);
    });

    it("takes the caller from the authorizer, not from a header naming someone else", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ body: StartBodySchema });

      // Act
      await lambda(event({ headers: { "x-owner": "mallory" } }), CONTEXT);

      // Assess
      assert.equal(calls[0]?.owner, OWNER);
    });

    it("checks the caller before the body", async () => {
      // Prepare
      const { lambda } = echoRoute({ body: StartBodySchema, maxBodyBytes: 4 });

      // Act
      const response = await lambda(event({ authorizer: null, body: "not json at all" }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 401);
    });

    it("turns a NotFoundError from the handler into 404", async () => {
      // Prepare
      const lambda = throwingRoute(new NotFoundError("kernel 'k1' not found"));

      // Act
      const response = await lambda(event({ pathParameters: { kernelId: "k1" } }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 404);
      assert.deepEqual(errorOf(response), { error: { code: "NOT_FOUND", message: "kernel 'k1' not found" } });
    });

    it("turns a plain Error from the handler into 500 without its message", async () => {
      // Prepare
      const lambda = throwingRoute(new Error("connect ECONNREFUSED 10.0.0.7:8888 token=s3cr3t"));

      // Act
      const response = await lambda(event({ pathParameters: { kernelId: "k1" } }), CONTEXT);

      // Assess
      assert.equal(response.statusCode, 500);
      assert.deepEqual(errorOf(response), { error: { code: "INTERNAL", message: "internal error" } });
      assert.doesNotMatch(response.body ?? "", /ECONNREFUSED|10\.0\.0\.7|s3cr3t/);
      assert.equal(response.headers?.["content-type"], "application/json");
    });

    it("accepts a custom params schema", async () => {
      // Prepare
      const { lambda, calls } = echoRoute({ params: z.object({ kernelId: z.string(), runId: z.uuid() }) });

      // Act
      const response = await lambda(
        event({ pathParameters: { kernelId: "k1", runId: "8d3c4f5e-1b2a-4c6d-9e8f-0a1b2c3d4e5f" } }),
        CONTEXT,
      );

      // Assess
      assert.equal(response.statusCode, 200);
      assert.deepEqual(calls[0]?.params, { kernelId: "k1", runId: "8d3c4f5e-1b2a-4c6d-9e8f-0a1b2c3d4e5f" });
    });
  });
});
