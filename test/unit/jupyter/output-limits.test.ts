import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  cutText,
  fitBundle,
  fitError,
  fitTraceback,
  responseBytes,
  textBytes,
} from "../../../lib/jupyter/output-limits.ts";

/** The Lambda response of an HTTP function: the body is the RunResult's JSON, as a string. */
const lambdaResponse = (value: unknown) =>
  JSON.stringify({ statusCode: 200, headers: {}, body: JSON.stringify(value) });

/** Text with every kind of character the measure treats differently, pairs split and whole. */
const MIXED = `a "q" \\ \n\t\r\u0001\u001f\u007f é € 😀 \ud800x \udc00 \u2028 end`;

describe("responseBytes", () => {
  it("is what a value adds to the Lambda response that carries it", () => {
    // Prepare
    const values = [MIXED, { "text/plain": MIXED, "image/png": "iVBOR" }, ["a", 1, null], 12.5];

    for (const value of values) {
      // Act
      const bytes = responseBytes(value);

      // Assess
      const empty = Buffer.byteLength(lambdaResponse(null)) - responseBytes(null);
      assert.equal(bytes, Buffer.byteLength(lambdaResponse(value)) - empty, JSON.stringify(value));
    }
  });

  it("costs a control character 7 bytes, a quote 4, a newline 3 and a letter 1", () => {
    // Act
    const costs = ["\u0001", '"', "\\", "\n", "a", "é", "😀"].map(textBytes);

    // Assess
    assert.deepEqual(costs, [7, 4, 4, 3, 1, 2, 4]);
  });
});

describe("cutText", () => {
  it("keeps the longest start within the budget, measured as responseBytes measures it", () => {
    // Prepare
    const whole = textBytes(MIXED);

    for (let budget = 0; budget <= whole; budget++) {
      // Act
      const kept = cutText(MIXED, budget);

      // Assess
      assert.ok(MIXED.startsWith(kept));
      assert.ok(textBytes(kept) <= budget, `budget ${budget}: kept ${textBytes(kept)} bytes`);
      const next = MIXED.codePointAt(kept.length);
      if (next !== undefined) {
        const longer = MIXED.slice(0, kept.length + (next > 0xffff ? 2 : 1));
        assert.ok(textBytes(longer) > budget, `budget ${budget}: one more character would fit`);
      }
    }
  });

  it("never splits a surrogate pair", () => {
    // Prepare
    const emoji = "😀😀😀";

    // Act
    const kept = [0, 1, 2, 3, 4, 5, 7, 8, 12].map((budget) => cutText(emoji, budget));

    // Assess
    assert.deepEqual(kept, ["", "", "", "", "😀", "😀", "😀", "😀😀", "😀😀😀"]);
  });

  it("returns the text itself when it fits", () => {
    // Act
    const kept = cutText("fits", 4);

    // Assess
    assert.equal(kept, "fits");
  });
});

describe("fitBundle", () => {
  it("keeps a bundle that fits as it is, with its exact size", () => {
    // Prepare
    const bundle = { "text/plain": MIXED, "application/json": { a: [1, 2] } };

    // Act
    const fitted = fitBundle(bundle, 10_000);

    // Assess
    assert.deepEqual(fitted, { value: bundle, bytes: responseBytes(bundle), cut: false });
  });

  it("drops rich values largest first, then cuts text/plain, reporting the exact size left", () => {
    // Prepare
    const bundle = {
      "text/plain": "t".repeat(300),
      "text/html": "<b>x</b>",
      "image/png": "P".repeat(500),
    };

    for (let budget = 0; budget <= responseBytes(bundle); budget += 7) {
      // Act
      const fitted = fitBundle(bundle, budget);

      // Assess
      assert.equal(fitted.bytes, fitted.value === undefined ? 0 : responseBytes(fitted.value));
      assert.ok(fitted.bytes <= budget, `budget ${budget}`);
      assert.equal(fitted.cut, true);
      const kept = fitted.value ?? {};
      if ("image/png" in kept) assert.fail(`budget ${budget}: the largest rich value is kept`);
      if ("text/html" in kept) assert.equal(kept["text/plain"], bundle["text/plain"]);
    }
  });

  it("keeps nothing when not even the start of the text fits", () => {
    // Act
    const fitted = fitBundle({ "image/png": "P".repeat(100), "text/plain": "abc" }, 20);

    // Assess
    assert.deepEqual(fitted, { value: undefined, bytes: 0, cut: true });
  });
});

describe("fitError", () => {
  it("keeps a small error as it is", () => {
    // Prepare
    const error = { ename: "ValueError", evalue: "bad", traceback: ["ValueError: bad"] };

    // Act
    const fitted = fitError(error, 1_024);

    // Assess
    assert.deepEqual(fitted, { value: error, bytes: responseBytes(error), cut: false });
  });

  it("gives a long message the room a short traceback does not need", () => {
    // Prepare
    const error = { ename: "ValueError", evalue: "v".repeat(5_000), traceback: ["short"] };

    // Act
    const fitted = fitError(error, 1_024);

    // Assess
    assert.deepEqual(fitted.value.traceback, ["short"]);
    assert.ok(fitted.bytes <= 1_024 && fitted.bytes > 1_000, `${fitted.bytes} bytes`);
  });
});

describe("fitTraceback", () => {
  it("keeps both ends of a long traceback and says how many lines it left out", () => {
    // Prepare
    const lines = Array.from({ length: 100 }, (_, i) => `frame ${i}`);

    // Act
    const kept = fitTraceback(lines, 300);

    // Assess
    const marker = kept.findIndex((line) => line.startsWith("[..."));
    const head = kept.slice(0, marker);
    const tail = kept.slice(marker + 1);
    assert.deepEqual(head, lines.slice(0, head.length));
    assert.deepEqual(tail, lines.slice(-tail.length));
    assert.ok(Math.abs(head.length - tail.length) <= 1);
    assert.equal(
      kept[marker],
      `[... ${100 - head.length - tail.length} of 100 traceback entries left out: the output cap was reached ...]`,
    );
    assert.ok(responseBytes(kept) - 2 <= 300);
  });

  it("cuts a line too long for its share instead of leaving it out", () => {
    // Prepare
    const lines = ["head", "x".repeat(10_000), "ValueError: boom"];

    // Act
    const kept = fitTraceback(lines, 1_000);

    // Assess
    assert.equal(kept.length, 3);
    assert.equal(kept[0], "head");
    assert.match(kept[1] ?? "", /^x+$/);
    assert.equal(kept[2], "ValueError: boom");
  });
});
