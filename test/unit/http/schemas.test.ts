import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type * as z from "zod";
import { KernelIdSchema } from "../../../lib/core/kernel.ts";
import { KernelPathSchema, RunBodySchema, StartBodySchema } from "../../../lib/http/schemas.ts";

/** The issues of a failed parse as `path: message` lines, so a test can check where and why. */
function issuesOf(schema: z.ZodType, value: unknown): string[] {
  const parsed = schema.safeParse(value);
  assert.equal(parsed.success, false, `expected ${JSON.stringify(value)} to be rejected`);
  return (parsed.error?.issues ?? []).map((issue) => `${issue.path.map(String).join(".")}: ${issue.message}`);
}

/** `count` distinct, allowed variables. */
function manyVariables(count: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, index) => [`VAR_${index}`, "x"]));
}

const KERNEL_ID_RULE = "must be 1-128 of A-Z a-z 0-9 . _ - and start with a letter or digit";

describe("schemas", () => {
  describe("KernelIdSchema", () => {
    for (const id of ["a", "7", "A.b_c-1", "a".repeat(128), `Z${"._-9".repeat(31)}abc`]) {
      it(`accepts ${JSON.stringify(id.length > 20 ? `${id.slice(0, 12)}… (${id.length} chars)` : id)}`, () => {
        // Act
        const parsed = KernelIdSchema.safeParse(id);

        // Assess
        assert.deepEqual(parsed, { success: true, data: id });
      });
    }

    const rejected: ReadonlyArray<[string, string]> = [
      ["the empty string", ""],
      ["129 characters", "a".repeat(129)],
      ["a leading dot", ".a"],
      ["a leading dash", "-a"],
      ["a leading underscore", "_a"],
      ["a slash", "a/b"],
      ["a path traversal", "../a"],
      ["a space", "a b"],
      ["a trailing newline", "a\n"],
      ["a non-ASCII letter", "café"],
      ["a non-ASCII digit", "a٣"],
      ["an emoji", "a😀"],
    ];
    for (const [name, id] of rejected) {
      it(`rejects ${name}`, () => {
        // Act
        const issues = issuesOf(KernelIdSchema, id);

        // Assess
        assert.deepEqual(issues, [`: ${KERNEL_ID_RULE}`]);
      });
    }
  });

  describe("KernelPathSchema", () => {
    it("reads kernelId from the path parameters", () => {
      // Act
      const parsed = KernelPathSchema.parse({ kernelId: "k-1" });

      // Assess
      assert.deepEqual(parsed, { kernelId: "k-1" });
    });

    it("rejects path parameters without a kernelId", () => {
      // Act
      const parsed = KernelPathSchema.safeParse({});

      // Assess
      assert.equal(parsed.success, false);
      assert.deepEqual(
        parsed.error?.issues.map((issue) => issue.path),
        [["kernelId"]],
      );
    });
  });

  describe("StartBodySchema", () => {
    it("accepts an empty object", () => {
      // Act
      const parsed = StartBodySchema.parse({});

      // Assess
      assert.deepEqual(parsed, {});
    });

    it("accepts every field together", () => {
      // Prepare
      const body = { kernelId: "analysis-1", cwd: "/work/data", env: { OPENAI_MODEL: "gpt", _flag: "" } };

      // Act
      const parsed = StartBodySchema.parse(body);

      // Assess
      assert.deepEqual(parsed, body);
    });

    it("rejects an unknown field", () => {
      // Act
      const issues = issuesOf(StartBodySchema, { kernelID: "typo" });

      // Assess
      assert.deepEqual(issues, [': Unrecognized key: "kernelID"']);
    });

    it("rejects an invalid kernelId", () => {
      // Act
      const issues = issuesOf(StartBodySchema, { kernelId: "-bad" });

      // Assess
      assert.deepEqual(issues, [`kernelId: ${KERNEL_ID_RULE}`]);
    });

    describe("cwd", () => {
      it("accepts the root directory", () => {
        // Act
        const parsed = StartBodySchema.parse({ cwd: "/" });

        // Assess
        assert.deepEqual(parsed, { cwd: "/" });
      });

      for (const cwd of ["work", "./work", "", "~/work"]) {
        it(`rejects the relative path ${JSON.stringify(cwd)}`, () => {
          // Act
          const issues = issuesOf(StartBodySchema, { cwd });

          // Assess
          assert.deepEqual(issues, ["cwd: must be an absolute path"]);
        });
      }

      it("rejects a path containing a NUL byte", () => {
        // Act
        const issues = issuesOf(StartBodySchema, { cwd: "/work\0/x" });

        // Assess
        assert.deepEqual(issues, ["cwd: must be an absolute path"]);
      });

      it("rejects a path longer than 4096 characters", () => {
        // Act
        const issues = issuesOf(StartBodySchema, { cwd: `/${"a".repeat(4_096)}` });

        // Assess
        assert.equal(issues.length, 1);
        assert.match(issues[0] ?? "", /^cwd: .*4096/);
      });
    });

    describe("env", () => {
      it("accepts ordinary variable names", () => {
        // Prepare
        const env = {
          A: "1",
          lower_case: "2",
          _LEADING: "3",
          MIXED_Case9: "4",
          [`V${"x".repeat(127)}`]: "5",
        };

        // Act
        const parsed = StartBodySchema.parse({ env });

        // Assess
        assert.deepEqual(parsed, { env });
      });

      const reserved: ReadonlyArray<[string, string]> = [
        ["KERNEL_IMAGE", "variables starting with KERNEL_ are operator configuration"],
        ["kernel_image", "variables starting with KERNEL_ are operator configuration"],
        ["PYBOX_X", "variables starting with PYBOX_ are operator configuration"],
        ["AWS_SECRET_ACCESS_KEY", "variables starting with AWS_ are operator configuration"],
        ["LD_PRELOAD", "variables starting with LD_ are operator configuration"],
        ["PYTHONPATH", "variables starting with PYTHON are operator configuration"],
        ["PATH", "PATH is set by the sandbox"],
        ["HOME", "HOME is set by the sandbox"],
        ["home", "home is set by the sandbox"],
      ];
      for (const [name, reason] of reserved) {
        it(`rejects the reserved variable ${name} and says why`, () => {
          // Act
          const issues = issuesOf(StartBodySchema, { env: { OK: "1", [name]: "x" } });

          // Assess
          assert.deepEqual(issues, [`env.${name}: ${reason}`]);
        });
      }

      for (const name of ["1A", "A-B", "A B", "A.B", "É", ""]) {
        it(`rejects the invalid name ${JSON.stringify(name)}`, () => {
          // Act
          const issues = issuesOf(StartBodySchema, { env: { [name]: "x" } });

          // Assess
          assert.equal(issues.length, 1);
          assert.ok(issues[0]?.startsWith(`env.${name}: `), issues[0]);
        });
      }

      it("rejects a name longer than 128 characters", () => {
        // Prepare
        const name = `V${"x".repeat(128)}`;

        // Act
        const issues = issuesOf(StartBodySchema, { env: { [name]: "x" } });

        // Assess
        assert.equal(issues.length, 1);
        assert.ok(issues[0]?.startsWith(`env.${name}: `), issues[0]);
      });

      it("accepts 64 variables", () => {
        // Prepare
        const env = manyVariables(64);

        // Act
        const parsed = StartBodySchema.parse({ env });

        // Assess
        assert.equal(Object.keys(parsed.env ?? {}).length, 64);
      });

      it("rejects 65 variables", () => {
        // Act
        const issues = issuesOf(StartBodySchema, { env: manyVariables(65) });

        // Assess
        assert.deepEqual(issues, ["env: at most 64 variables"]);
      });

      it("accepts a value of 4096 characters", () => {
        // Prepare
        const value = "v".repeat(4_096);

        // Act
        const parsed = StartBodySchema.parse({ env: { LONG: value } });

        // Assess
        assert.equal(parsed.env?.LONG, value);
      });

      it("rejects a value of 4097 characters", () => {
        // Act
        const issues = issuesOf(StartBodySchema, { env: { LONG: "v".repeat(4_097) } });

        // Assess
        assert.equal(issues.length, 1);
        assert.match(issues[0] ?? "", /^env\.LONG: .*4096/);
      });

      it("rejects a value containing a NUL byte", () => {
        // Act
        const issues = issuesOf(StartBodySchema, { env: { A: "before\0after" } });

        // Assess
        assert.deepEqual(issues, ["env.A: contains a NUL byte"]);
      });

      for (const value of [1, true, null, ["x"], { x: "y" }]) {
        it(`rejects the non-string value ${JSON.stringify(value)}`, () => {
          // Act
          const issues = issuesOf(StartBodySchema, { env: { A: value } });

          // Assess
          assert.equal(issues.length, 1);
          assert.ok(issues[0]?.startsWith("env.A: "), issues[0]);
        });
      }

      it("rejects an env that is not an object", () => {
        // Act
        const issues = issuesOf(StartBodySchema, { env: ["A=1"] });

        // Assess
        assert.equal(issues.length, 1);
        assert.ok(issues[0]?.startsWith("env: "), issues[0]);
      });
    });
  });

  describe("RunBodySchema", () => {
    it("accepts code alone", () => {
      // Act
      const parsed = RunBodySchema.parse({ code: "1 + 1" });

      // Assess
      assert.deepEqual(parsed, { code: "1 + 1" });
    });

    it("accepts empty code and a timeout", () => {
      // Act
      const parsed = RunBodySchema.parse({ code: "", timeoutMs: 1 });

      // Assess
      assert.deepEqual(parsed, { code: "", timeoutMs: 1 });
    });

    it("accepts the largest timeout", () => {
      // Act
      const parsed = RunBodySchema.parse({ code: "x", timeoutMs: 3_600_000 });

      // Assess
      assert.deepEqual(parsed, { code: "x", timeoutMs: 3_600_000 });
    });

    it("requires code", () => {
      // Act
      const issues = issuesOf(RunBodySchema, { timeoutMs: 100 });

      // Assess
      assert.deepEqual(issues, ["code: code is required and must be a string"]);
    });

    for (const code of [42, null, ["print(1)"], { source: "x" }]) {
      it(`rejects the non-string code ${JSON.stringify(code)}`, () => {
        // Act
        const issues = issuesOf(RunBodySchema, { code });

        // Assess
        assert.deepEqual(issues, ["code: code is required and must be a string"]);
      });
    }

    for (const timeoutMs of [0, -1, 1.5, 3_600_001, "100", Number.NaN]) {
      it(`rejects the timeout ${String(timeoutMs)}`, () => {
        // Act
        const issues = issuesOf(RunBodySchema, { code: "x", timeoutMs });

        // Assess
        assert.equal(issues.length, 1);
        assert.ok(issues[0]?.startsWith("timeoutMs: "), issues[0]);
      });
    }

    it("rejects an unknown field", () => {
      // Act
      const issues = issuesOf(RunBodySchema, { code: "x", timeout: 5 });

      // Assess
      assert.deepEqual(issues, [': Unrecognized key: "timeout"']);
    });
  });
});
