import assert from "node:assert/strict";
import { afterEach, describe, it, mock } from "node:test";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { lambdaContext } from "../../../lib/dev/lambda-context.ts";
import { httpHandler } from "../../../lib/http/handler.ts";
import { KernelPathSchema } from "../../../lib/http/schemas.ts";
import { logger } from "../../../lib/logger.ts";

/** Every JSON line the process wrote to stdout or stderr while `act` ran. */
async function capturedLines(act: () => Promise<unknown>): Promise<Array<Record<string, unknown>>> {
  let text = "";
  const capture = (chunk: string | Uint8Array) => {
    text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    return true;
  };
  const writes = [
    mock.method(process.stdout, "write", capture),
    mock.method(process.stderr, "write", capture),
  ];
  try {
    await act();
  } finally {
    for (const write of writes) write.mock.restore();
  }
  return text
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

function event(kernelId: string): APIGatewayProxyEventV2 {
  return {
    version: "2.0",
    routeKey: "GET /kernels/{kernelId}",
    rawPath: `/kernels/${kernelId}`,
    rawQueryString: "",
    headers: {},
    pathParameters: { kernelId },
    isBase64Encoded: false,
    requestContext: { authorizer: { lambda: { principalId: "alice" } } },
  } as unknown as APIGatewayProxyEventV2;
}

describe("request logging", () => {
  afterEach(() => {
    mock.restoreAll();
  });

  it("puts the request id, the function and the caller's kernel id on every line of a request", async () => {
    // Prepare
    const lambda = httpHandler({
      params: KernelPathSchema,
      handle: async () => {
        logger.info("working on it");
        throw new Error("a bug");
      },
    });
    const context = lambdaContext("get", 10_000);

    // Act
    const lines = await capturedLines(() => lambda(event("k1"), context));

    // Assess
    assert.equal(lines.length, 2, JSON.stringify(lines));
    for (const line of lines) {
      assert.equal(line.function_request_id, context.awsRequestId);
      assert.equal(line.function_name, context.functionName);
      assert.equal(line.kernelId, "k1");
      assert.equal(typeof line.cold_start, "boolean");
    }
  });

  it("forgets the kernel id once the request is over", async () => {
    // Prepare
    const lambda = httpHandler({ params: KernelPathSchema, handle: async () => ({ statusCode: 204 }) });
    await lambda(event("k1"), lambdaContext("get", 10_000));
    const context = lambdaContext("get", 10_000);

    // Act
    const lines = await capturedLines(async () => {
      await lambda(event("k2"), context);
      logger.info("between requests");
    });

    // Assess
    const between = lines.find((line) => line.message === "between requests");
    assert.ok(between);
    assert.equal(between.kernelId, undefined);
  });
});
