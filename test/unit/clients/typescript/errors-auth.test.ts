import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { isNotFound, PyboxClient, PyboxNotFoundError } from "../../../../clients/typescript/src/index.ts";
import { rejection } from "../../../support/pybox-error.ts";
import { type HttpDouble, kernelView, serve, serviceError } from "./http-double.ts";

let server: HttpDouble | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("bearer auth", () => {
  it("sends Authorization: Bearer <token> on every request", async () => {
    server = await serve(() => ({ status: 200, json: kernelView() }));
    const client = new PyboxClient({ baseUrl: `${server.url}/`, token: "alice" });

    await client.get("k1");
    await client.get("k1");

    assert.deepEqual(
      server.requests.map((request) => request.headers.authorization),
      ["Bearer alice", "Bearer alice"],
    );
    assert.equal(server.requests[0]?.url, "/kernels/k1", "no doubled slash from the base URL's");
  });

  it("asks a token function before each request, so a refreshed JWT is used", async () => {
    server = await serve(() => ({ status: 200, json: kernelView() }));
    let issued = 0;
    const client = new PyboxClient({ baseUrl: server.url, token: async () => `jwt-${++issued}` });

    await client.get("k1");
    await client.get("k1");

    assert.deepEqual(
      server.requests.map((request) => request.headers.authorization),
      ["Bearer jwt-1", "Bearer jwt-2"],
    );
  });

  it("sends no Authorization without a token", async () => {
    server = await serve(() => ({ status: 200, json: kernelView() }));

    await new PyboxClient({ baseUrl: server.url }).get("k1");

    assert.equal(server.requests[0]?.headers.authorization, undefined);
  });

  it("refuses a token together with SigV4, and SigV4 settings without SigV4", () => {
    assert.throws(
      () => new PyboxClient({ baseUrl: "http://127.0.0.1:1", token: "t", auth: "sigv4" }),
      /not both/,
    );
    assert.throws(() => new PyboxClient({ baseUrl: "http://127.0.0.1:1", region: "eu-west-1" }), /sigv4/);
    assert.throws(() => new PyboxClient({ baseUrl: "not a url" }));
  });
});

describe("errors", () => {
  it("carries the service's status, code, message and validation details", async () => {
    server = await serve(() => ({
      status: 400,
      json: {
        error: {
          code: "INVALID_REQUEST",
          message: "timeoutMs: too big",
          details: [{ path: "body.timeoutMs", message: "too big" }],
        },
      },
    }));
    const client = new PyboxClient({ baseUrl: server.url });

    const error = await rejection(client.run("k1", "1", { timeoutMs: 5_000 }));

    assert.ok(error instanceof Error);
    assert.equal(error.name, "PyboxError");
    assert.equal(error.status, 400);
    assert.equal(error.code, "INVALID_REQUEST");
    assert.equal(error.message, "timeoutMs: too big");
    assert.deepEqual(error.details, [{ path: "body.timeoutMs", message: "too big" }]);
  });

  it("makes a 404 a PyboxNotFoundError", async () => {
    server = await serve(() => ({ status: 404, json: serviceError("NOT_FOUND", "no kernel k1") }));
    const client = new PyboxClient({ baseUrl: server.url });

    const error = await rejection(client.get("k1"));

    assert.ok(error instanceof PyboxNotFoundError);
    assert.ok(isNotFound(error));
    assert.equal(error.name, "PyboxNotFoundError");
    assert.equal(error.code, "NOT_FOUND");
    assert.equal(error.message, "no kernel k1");
  });

  it("says HTTP_ERROR for a body that is not the service's, without repeating the body", async () => {
    server = await serve(() => ({
      status: 502,
      headers: { "content-type": "text/html" },
      raw: "<html><body>upstream 10.0.3.7:8080 stack trace</body></html>",
    }));
    const client = new PyboxClient({ baseUrl: server.url });

    const error = await rejection(client.get("k1"));

    assert.equal(error.status, 502);
    assert.equal(error.code, "HTTP_ERROR");
    assert.doesNotMatch(error.message, /10\.0\.3\.7|stack|html/);
    assert.equal(Object.keys(error).includes("response"), false, "no response kept on the error");
  });

  it("keeps API Gateway's own message ({message}) before the service ran", async () => {
    server = await serve(() => ({ status: 403, json: { message: "Forbidden" } }));
    const client = new PyboxClient({ baseUrl: server.url });

    const error = await rejection(client.get("k1"));

    assert.equal(error.status, 403);
    assert.equal(error.code, "HTTP_ERROR");
    assert.equal(error.message, "Forbidden");
  });

  it("says UNEXPECTED_REPLY for a success whose body is not JSON", async () => {
    server = await serve(() => ({
      status: 200,
      headers: { "content-type": "application/json" },
      raw: "{oops",
    }));
    const client = new PyboxClient({ baseUrl: server.url });

    const error = await rejection(client.get("k1"));

    assert.equal(error.code, "UNEXPECTED_REPLY");
  });

  it("treats stopping a kernel that is already gone as success", async () => {
    server = await serve((_, index) =>
      index === 0 ? { status: 204 } : { status: 404, json: serviceError("NOT_FOUND") },
    );
    const client = new PyboxClient({ baseUrl: server.url });

    await client.stop("k1");
    await client.stop("k1");

    assert.deepEqual(
      server.requests.map((request) => `${request.method} ${request.url}`),
      ["DELETE /kernels/k1", "DELETE /kernels/k1"],
    );
  });

  it("does not swallow other errors of stop", async () => {
    server = await serve(() => ({ status: 401, json: serviceError("UNAUTHENTICATED") }));

    const error = await rejection(new PyboxClient({ baseUrl: server.url }).stop("k1"));

    assert.equal(error.code, "UNAUTHENTICATED");
  });
});
