import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { PyboxClient, retryAfterMs } from "../../../../clients/typescript/src/index.ts";
import { rejection } from "../../../support/pybox-error.ts";
import { closedPort, type HttpDouble, kernelView, runResult, serve, serviceError } from "./http-double.ts";

let server: HttpDouble | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("retries", () => {
  it("sends a request refused with 503 and Retry-After: 1 again after a second, and returns the answer", async () => {
    server = await serve((_, index) =>
      index === 0
        ? { status: 503, headers: { "retry-after": "1" }, json: serviceError("BACKEND_UNAVAILABLE") }
        : { status: 200, json: kernelView("k1") },
    );
    const client = new PyboxClient({ baseUrl: server.url });
    const started = Date.now();

    const kernel = await client.get("k1");

    assert.equal(kernel.kernelId, "k1");
    assert.equal(server.requests.length, 2);
    assert.ok(Date.now() - started >= 950, `retried after ${Date.now() - started} ms, before Retry-After`);
  });

  it("backs off (briefly, with jitter) on a 429 without Retry-After", async () => {
    server = await serve((_, index) =>
      index < 2 ? { status: 429, json: serviceError("CAPACITY") } : { status: 201, json: kernelView("k2") },
    );
    const client = new PyboxClient({ baseUrl: server.url, retry: { baseDelayMs: 20 } });
    const started = Date.now();

    const kernel = await client.start({ kernelId: "k2" });

    assert.equal(kernel.created, true);
    assert.equal(server.requests.length, 3);
    assert.ok(Date.now() - started < 1_000, "backoff of a 20 ms base took a second");
  });

  it("gives up after the attempts allowed with the service's code, status and Retry-After", async () => {
    server = await serve(() => ({
      status: 503,
      headers: { "retry-after": "0" },
      json: serviceError("STORE_UNAVAILABLE", "the kernel store is unavailable; try again shortly"),
    }));
    const client = new PyboxClient({ baseUrl: server.url, retry: { attempts: 3 } });

    const error = await rejection(client.get("k1"));

    assert.equal(error.status, 503);
    assert.equal(error.code, "STORE_UNAVAILABLE");
    assert.equal(error.message, "the kernel store is unavailable; try again shortly");
    assert.equal(error.retryAfterMs, 0);
    assert.equal(server.requests.length, 3);
  });

  it("does not retry a 503 HOST_SHARED: a deployment serving another caller does not change by waiting", async () => {
    server = await serve(() => ({
      status: 503,
      headers: { "retry-after": "0" },
      json: serviceError("HOST_SHARED", "this deployment serves one caller only"),
    }));
    const client = new PyboxClient({ baseUrl: server.url, retry: { attempts: 5 } });

    const error = await rejection(client.start({ kernelId: "k1" }));

    assert.equal(error.status, 503);
    assert.equal(error.code, "HOST_SHARED");
    assert.equal(server.requests.length, 1);
  });

  it("does not retry a 400", async () => {
    server = await serve(() => ({ status: 400, json: serviceError("INVALID_REQUEST", "invalid kernelId") }));
    const client = new PyboxClient({ baseUrl: server.url });

    const error = await rejection(client.get("k1"));

    assert.equal(error.status, 400);
    assert.equal(error.code, "INVALID_REQUEST");
    assert.equal(server.requests.length, 1);
  });

  it("does not retry a 409 KERNEL_BUSY, and reports its Retry-After", async () => {
    server = await serve(() => ({
      status: 409,
      headers: { "retry-after": "3" },
      json: serviceError("KERNEL_BUSY"),
    }));
    const client = new PyboxClient({ baseUrl: server.url });

    const error = await rejection(client.run("k1", "1"));

    assert.equal(error.code, "KERNEL_BUSY");
    assert.equal(error.retryAfterMs, 3_000);
    assert.equal(server.requests.length, 1);
  });

  it("retries a POST …/run the service refused (429 CAPACITY), which proves it did not run", async () => {
    server = await serve((_, index) =>
      index === 0
        ? { status: 429, headers: { "retry-after": "0" }, json: serviceError("CAPACITY") }
        : { status: 200, json: runResult("7") },
    );
    const client = new PyboxClient({ baseUrl: server.url });

    const result = await client.run("k1", "7");

    assert.equal(result.data[0]?.["text/plain"], "7");
    assert.equal(server.requests.length, 2);
  });

  it("never resends a POST …/run on a bare 503 from something in front of the service (it may have run)", async () => {
    server = await serve(() => ({ status: 503, json: { message: "Service Unavailable" } }));
    const client = new PyboxClient({ baseUrl: server.url, retry: { baseDelayMs: 1 } });

    const error = await rejection(client.run("k1", "x += 1"));

    assert.equal(error.status, 503);
    assert.equal(error.code, "HTTP_ERROR");
    assert.equal(error.message, "Service Unavailable");
    assert.equal(server.requests.length, 1);
  });

  it("retries a bare 503 for a request that is safe to repeat", async () => {
    server = await serve((_, index) =>
      index === 0 ? { status: 503, raw: "<html>busy</html>" } : { status: 200, json: kernelView() },
    );
    const client = new PyboxClient({ baseUrl: server.url, retry: { baseDelayMs: 1 } });

    await client.get("k1");

    assert.equal(server.requests.length, 2);
  });

  it("resends a GET whose connection was cut, but never a POST …/run that reached the server", async () => {
    let gets = 0;
    server = await serve((request) => {
      if (request.method !== "GET") return "reset";
      gets += 1;
      return gets === 1 ? "reset" : { status: 200, json: kernelView() };
    });
    const client = new PyboxClient({ baseUrl: server.url, retry: { baseDelayMs: 1 } });

    await client.get("k1");
    assert.equal(server.requests.length, 2);

    const error = await rejection(client.run("k1", "x += 1"));
    assert.equal(error.status, 0);
    assert.equal(error.code, "UNREACHABLE");
    assert.equal(server.requests.length, 3, "the run was sent once");
  });

  it("retries a connection that was refused (nothing arrived), then says UNREACHABLE", async () => {
    const port = await closedPort();
    let sent = 0;
    const client = new PyboxClient({
      baseUrl: `http://127.0.0.1:${port}`,
      retry: { attempts: 3, baseDelayMs: 1 },
      fetch: (request) => {
        sent += 1;
        return fetch(request);
      },
    });

    const error = await rejection(client.run("k1", "1"));

    assert.equal(sent, 3, "a run that never arrived is safe to send again");

    assert.equal(error.status, 0);
    assert.equal(error.code, "UNREACHABLE");
    assert.match(error.message, /ECONNREFUSED/);
  });

  it("stops waiting between attempts when the caller aborts", async () => {
    server = await serve(() => ({
      status: 503,
      headers: { "retry-after": "30" },
      json: serviceError("CAPACITY"),
    }));
    const client = new PyboxClient({ baseUrl: server.url });
    const started = Date.now();

    await assert.rejects(client.get("k1", { signal: AbortSignal.timeout(100) }), { name: "TimeoutError" });

    assert.ok(Date.now() - started < 5_000);
    assert.equal(server.requests.length, 1);
  });

  it("ends an attempt that gets no answer within the request timeout with TIMEOUT", async () => {
    server = await serve(() => new Promise(() => {}));
    const client = new PyboxClient({ baseUrl: server.url, requestTimeoutMs: 100 });

    const error = await rejection(client.get("k1"));

    assert.equal(error.code, "TIMEOUT");
    assert.equal(server.requests.length, 1);
  });

  it("reads Retry-After as delta-seconds or as an HTTP-date", () => {
    const now = Date.parse("2025-01-01T00:00:00Z");
    assert.equal(retryAfterMs("2", now), 2_000);
    assert.equal(retryAfterMs("0", now), 0);
    assert.equal(retryAfterMs("Wed, 01 Jan 2025 00:00:05 GMT", now), 5_000);
    assert.equal(retryAfterMs("Tue, 31 Dec 2024 23:00:00 GMT", now), 0);
    assert.equal(retryAfterMs("soon", now), undefined);
    assert.equal(retryAfterMs(null, now), undefined);
  });

  it("caps a long Retry-After at maxDelayMs", async () => {
    server = await serve((_, index) =>
      index === 0
        ? { status: 503, headers: { "retry-after": "3600" }, json: serviceError("QUEUE_UNAVAILABLE") }
        : { status: 200, json: kernelView() },
    );
    const client = new PyboxClient({ baseUrl: server.url, retry: { maxDelayMs: 50 } });
    const started = Date.now();

    await client.get("k1");

    assert.ok(Date.now() - started < 2_000);
  });
});
