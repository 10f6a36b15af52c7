import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RunResult } from "../../../lib/core/run-result.ts";
import { dynamoSize, fitResult } from "../../../lib/sandbox/fit-result.ts";

const base: RunResult = {
  status: "ok",
  data: [],
  error: null,
  executionCount: 1,
  durationMs: 5,
  truncated: false,
  artifacts: [],
};

const size = (result: RunResult) => Buffer.byteLength(JSON.stringify(result), "utf8");

describe("fitResult", () => {
  it("returns a result that fits unchanged", () => {
    const result = { ...base, data: [{ "text/plain": "42" }] };
    assert.equal(fitResult(result, 10_000), result);
  });

  it("drops trailing outputs until the JSON fits, and says so", () => {
    const data = Array.from({ length: 50 }, (_, i) => ({ "text/plain": `${i}`.padEnd(500, ".") }));
    const fitted = fitResult({ ...base, data }, 12_000);
    assert.ok(size(fitted) <= 12_000);
    assert.equal(fitted.truncated, true);
    assert.ok(fitted.data.length > 0 && fitted.data.length < 50);
    assert.deepEqual(fitted.data, data.slice(0, fitted.data.length), "the first outputs are kept, in order");
  });

  it("drops the oldest artifacts before any output, and says so", () => {
    const artifacts = Array.from({ length: 100 }, (_, i) => ({
      path: `${i}`.padEnd(200, "x"),
      size: i,
      mtime: "2026-12-04T12:00:00.000Z",
    }));
    const data = [{ "text/plain": "kept" }];
    const fitted = fitResult({ ...base, data, artifacts }, 12_000);
    assert.ok(size(fitted) <= 12_000);
    assert.deepEqual(fitted.data, data);
    assert.equal(fitted.artifactsTruncated, true);
    assert.ok(fitted.artifacts.length > 0 && fitted.artifacts.length < 100);
    assert.deepEqual(fitted.artifacts, artifacts.slice(0, fitted.artifacts.length), "the newest are kept");
  });

  it("keeps the end of a huge traceback, where the error is", () => {
    const traceback = Array.from({ length: 400 }, (_, i) => `frame ${i} `.padEnd(100, "-"));
    const error = { ename: "RecursionError", evalue: "maximum recursion depth exceeded", traceback };
    const fitted = fitResult({ ...base, status: "error", error, data: [{ "text/plain": "kept" }] }, 12_000);
    assert.ok(size(fitted) <= 12_000);
    assert.equal(fitted.truncated, true);
    assert.equal(fitted.error?.ename, "RecursionError");
    assert.deepEqual(fitted.data, [{ "text/plain": "kept" }]);
    const kept = fitted.error?.traceback ?? [];
    assert.ok(kept.length > 0 && kept.length < 400);
    assert.equal(kept.at(-1), traceback.at(-1));
  });

  it("counts what DynamoDB counts: a long list of small numbers costs more than its JSON", () => {
    const data = [{ "application/json": Array(140_000).fill(7) }];
    const result = { ...base, data };
    assert.ok(Buffer.byteLength(JSON.stringify(result)) < 300_000, "small enough by JSON length");
    assert.ok(dynamoSize(result) > 300_000, "too big as a DynamoDB item");
    const fitted = fitResult(result, 300_000);
    assert.equal(fitted.truncated, true);
    assert.ok(dynamoSize(fitted) <= 300_000);
  });

  it("cuts even an error message that alone is too big", () => {
    const error = { ename: "ValueError", evalue: "v".repeat(50_000), traceback: [] };
    const fitted = fitResult({ ...base, status: "error", error }, 12_000);
    assert.ok(size(fitted) <= 12_000);
    assert.equal(fitted.error?.ename, "ValueError");
    assert.equal(fitted.truncated, true);
  });
});
