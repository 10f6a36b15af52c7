import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";
import type { Request } from "@middy/core";
import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import {
  BackendError,
  BackendUnavailableError,
  ConfigError,
  InvalidMessageError,
  KernelBusyError,
  KernelDeadError,
  KernelDiedError,
  KernelStartingError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  StoreUnavailableError,
  UnauthenticatedError,
  ValidationError,
} from "../../../lib/errors.ts";
import { errorResponse, httpErrorHandler, STATUS_BY_CODE } from "../../../lib/http/error-handler.ts";
import { logger } from "../../../lib/logger.ts";

interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

function bodyOf(response: APIGatewayProxyStructuredResultV2): ErrorBody {
  assert.equal(typeof response.body, "string");
  return JSON.parse(response.body ?? "") as ErrorBody;
}

function headersOf(response: APIGatewayProxyStructuredResultV2): Record<string, unknown> {
  return response.headers ?? {};
}

/** Replaces the logger's `error` so tests stay quiet and can see what was logged. */
function silenceErrorLog() {
  return mock.method(logger, "error", () => undefined);
}

describe("error-handler", () => {
  let errorLog: ReturnType<typeof silenceErrorLog>;
  beforeEach(() => {
    errorLog = silenceErrorLog();
  });
  afterEach(() => {
    mock.restoreAll();
  });

  describe("errorResponse", () => {
    const shown: ReadonlyArray<[string, Error, number, string]> = [
      ["UnauthenticatedError", new UnauthenticatedError("no caller"), 401, "UNAUTHENTICATED"],
      ["NotFoundError", new NotFoundError("kernel 'k1' not found"), 404, "NOT_FOUND"],
      ["KernelBusyError", new KernelBusyError("kernel 'k1' is busy"), 409, "KERNEL_BUSY"],
      ["KernelDeadError", new KernelDeadError("kernel 'k1' died"), 409, "KERNEL_DEAD"],
      ["KernelDiedError", new KernelDiedError("heartbeat lost"), 409, "KERNEL_DEAD"],
      ["KernelStartingError", new KernelStartingError("kernel 'k1' is starting"), 409, "KERNEL_STARTING"],
      ["PayloadTooLargeError", new PayloadTooLargeError("body exceeds 10 bytes"), 413, "PAYLOAD_TOO_LARGE"],
    ];
    for (const [name, error, status, code] of shown) {
      it(`maps ${name} to ${status} ${code} with its own message`, () => {
        // Act
        const response = errorResponse(error);

        // Assess
        assert.equal(response.statusCode, status);
        assert.deepEqual(bodyOf(response), { error: { code, message: error.message } });
        assert.equal(headersOf(response)["content-type"], "application/json");
      });
    }

    it("maps ValidationError to 400 with its details", () => {
      // Prepare
      const issues = [
        { path: "body.code", message: "code is required and must be a string" },
        { path: "body.timeoutMs", message: "Too small" },
      ];
      const error = new ValidationError("invalid body.code: code is required and must be a string", issues);

      // Act
      const response = errorResponse(error);

      // Assess
      assert.equal(response.statusCode, 400);
      assert.deepEqual(bodyOf(response), {
        error: {
          code: "INVALID_REQUEST",
          message: "invalid body.code: code is required and must be a string",
          details: issues,
        },
      });
    });

    it("leaves details out of a ValidationError without issues", () => {
      // Act
      const response = errorResponse(new ValidationError("request body is not valid JSON"));

      // Assess
      assert.equal(response.statusCode, 400);
      assert.deepEqual(bodyOf(response), {
        error: { code: "INVALID_REQUEST", message: "request body is not valid JSON" },
      });
    });

    it("maps MethodNotAllowedError to 405 with an Allow header", () => {
      // Act
      const response = errorResponse(new MethodNotAllowedError("PUT is not allowed", ["GET", "DELETE"]));

      // Assess
      assert.equal(response.statusCode, 405);
      assert.equal(headersOf(response).allow, "GET, DELETE");
      assert.deepEqual(bodyOf(response), {
        error: { code: "METHOD_NOT_ALLOWED", message: "PUT is not allowed" },
      });
    });

    it("maps BackendUnavailableError to 503 with a fixed message, hiding its own", () => {
      // Prepare
      const error = new BackendUnavailableError("connect ECONNREFUSED 10.0.0.7:50001", {
        retryAfterSeconds: 3,
      });

      // Act
      const response = errorResponse(error);

      // Assess
      assert.equal(response.statusCode, 503);
      assert.deepEqual(bodyOf(response), {
        error: {
          code: "BACKEND_UNAVAILABLE",
          message: "the kernel backend is unavailable; try again shortly",
        },
      });
      assert.equal(headersOf(response)["retry-after"], "3");
      assert.doesNotMatch(response.body ?? "", /10\.0\.0\.7|ECONNREFUSED|50001/);
    });

    it("sends Retry-After with a 503 for an unavailable backend even when the error names no delay", () => {
      // Prepare: as lib/backends/local/launch.ts and lib/jupyter/client.ts throw it
      const error = new BackendUnavailableError("the kernel did not bind its ports within 60000 ms");

      // Act
      const response = errorResponse(error);

      // Assess: the HTTP API contract promises Retry-After on a 503 for an unavailable backend
      assert.equal(response.statusCode, 503);
      assert.match(String(headersOf(response)["retry-after"]), /^[1-9][0-9]*$/);
    });

    it("maps BackendError to 502 with a fixed message, hiding its own", () => {
      // Act
      const response = errorResponse(new BackendError("kernel at 10.0.0.7 sent garbage"));

      // Assess
      assert.equal(response.statusCode, 502);
      assert.deepEqual(bodyOf(response), {
        error: { code: "BACKEND_ERROR", message: "the kernel backend answered in an unexpected way" },
      });
      assert.doesNotMatch(response.body ?? "", /10\.0\.0\.7/);
    });

    it("maps InvalidMessageError to 502 with a fixed message, hiding its own", () => {
      // Act
      const response = errorResponse(new InvalidMessageError("bad HMAC with key 5f1e-secret"));

      // Assess
      assert.equal(response.statusCode, 502);
      assert.deepEqual(bodyOf(response), {
        error: { code: "BACKEND_ERROR", message: "the kernel backend answered in an unexpected way" },
      });
    });

    it("maps StoreUnavailableError to 503 with a Retry-After when it names one", () => {
      // Act
      const response = errorResponse(
        new StoreUnavailableError("table arn:aws:dynamodb:eu-west-1:123456789012:table/t throttled", {
          retryAfterSeconds: 2,
        }),
      );

      // Assess
      assert.equal(response.statusCode, 503);
      assert.equal(headersOf(response)["retry-after"], "2");
      assert.deepEqual(bodyOf(response), {
        error: { code: "STORE_UNAVAILABLE", message: "the kernel store is unavailable; try again shortly" },
      });
      assert.doesNotMatch(response.body ?? "", /arn:aws|123456789012/);
    });

    it("passes a Retry-After on a client error that names one", () => {
      // Act
      const response = errorResponse(new KernelBusyError("busy", { retryAfterSeconds: 1 }));

      // Assess
      assert.equal(response.statusCode, 409);
      assert.equal(headersOf(response)["retry-after"], "1");
    });

    it("sends no Retry-After or Allow header when the error names none", () => {
      // Act
      const response = errorResponse(new NotFoundError("kernel 'k1' not found"));

      // Assess
      assert.deepEqual(headersOf(response), {
        "content-type": "application/json",
        "cache-control": "no-store",
      });
    });

    it("maps a plain Error to 500 'internal error' with no message, secret or stack", () => {
      // Prepare
      const error = new Error("secret at /home/x: password=hunter2");

      // Act
      const response = errorResponse(error);

      // Assess
      assert.equal(response.statusCode, 500);
      assert.deepEqual(bodyOf(response), { error: { code: "INTERNAL", message: "internal error" } });
      assert.doesNotMatch(response.body ?? "", /secret|\/home\/x|hunter2|\bat\b|\.ts:\d+/);
      assert.equal(headersOf(response)["content-type"], "application/json");
    });

    it("maps ConfigError to 500 'internal error', hiding its message", () => {
      // Act
      const response = errorResponse(new ConfigError("invalid configuration: PYBOX_TABLE: too short"));

      // Assess
      assert.equal(response.statusCode, 500);
      assert.deepEqual(bodyOf(response), { error: { code: "INTERNAL", message: "internal error" } });
    });

    for (const thrown of ["a string", 42, undefined, null, { message: "looks like an error" }]) {
      it(`maps the non-error ${JSON.stringify(thrown) ?? "undefined"} to 500 'internal error'`, () => {
        // Act
        const response = errorResponse(thrown);

        // Assess
        assert.equal(response.statusCode, 500);
        assert.deepEqual(bodyOf(response), { error: { code: "INTERNAL", message: "internal error" } });
      });
    }

    it("logs a server error with the original error", () => {
      // Prepare
      const error = new Error("secret at /home/x");

      // Act
      errorResponse(error);

      // Assess
      assert.equal(errorLog.mock.callCount(), 1);
      assert.deepEqual(errorLog.mock.calls[0]?.arguments, ["request failed", { error }]);
    });

    it("does not log a client error as an error", () => {
      // Act
      errorResponse(new NotFoundError("kernel 'k1' not found"));

      // Assess
      assert.equal(errorLog.mock.callCount(), 0);
    });
  });

  describe("STATUS_BY_CODE", () => {
    it("gives every code its documented status", () => {
      // Assess
      assert.deepEqual(STATUS_BY_CODE, {
        INVALID_REQUEST: 400,
        UNAUTHENTICATED: 401,
        NOT_FOUND: 404,
        METHOD_NOT_ALLOWED: 405,
        KERNEL_BUSY: 409,
        KERNEL_DEAD: 409,
        KERNEL_STARTING: 409,
        KERNEL_STOPPED: 409,
        RUN_CONFLICT: 409,
        UPLOAD_CONFLICT: 409,
        FOLDER_NOT_EMPTY: 409,
        PAYLOAD_TOO_LARGE: 413,
        CAPACITY: 429,
        STORE_UNAVAILABLE: 503,
        BACKEND_UNAVAILABLE: 503,
        QUEUE_UNAVAILABLE: 503,
        KERNEL_LAUNCH_FAILED: 503,
        HOST_SHARED: 503,
        BACKEND_ERROR: 502,
        RUN_OUTCOME_UNKNOWN: 502,
        INTERNAL: 500,
      });
    });
  });

  describe("httpErrorHandler", () => {
    it("replaces the response with the error's response", async () => {
      // Prepare
      const middleware = httpErrorHandler();
      const request = {
        event: {},
        context: {},
        response: undefined,
        error: new NotFoundError("kernel 'k1' not found"),
        internal: {},
      } as unknown as Request<unknown, APIGatewayProxyStructuredResultV2>;

      // Act
      await middleware.onError?.(request);

      // Assess
      assert.equal(request.response?.statusCode, 404);
      assert.deepEqual(JSON.parse(request.response?.body ?? ""), {
        error: { code: "NOT_FOUND", message: "kernel 'k1' not found" },
      });
    });
  });
});
