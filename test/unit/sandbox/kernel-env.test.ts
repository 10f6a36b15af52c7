import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CALLER_ENV_KEY,
  MAX_CALLER_ENV_ENTRIES,
  MAX_CALLER_ENV_VALUE,
  reservedEnvReason,
} from "../../../lib/core/caller-env.ts";
import { mergeKernelEnv } from "../../../lib/sandbox/kernel-env.ts";

describe("kernel-env", () => {
  describe("mergeKernelEnv", () => {
    it("lets the operator's value win over the caller's", () => {
      // Prepare
      const operator = { OPENAI_API_BASE: "https://proxy.internal", SHARED: "operator" };
      const caller = { SHARED: "caller", MODEL: "small" };

      // Act
      const env = mergeKernelEnv(operator, caller);

      // Assess
      assert.deepEqual(env, {
        OPENAI_API_BASE: "https://proxy.internal",
        SHARED: "operator",
        MODEL: "small",
      });
    });

    it("keeps the operator's value even when the caller's is empty", () => {
      // Act
      const env = mergeKernelEnv({ A: "operator" }, { A: "" });

      // Assess
      assert.deepEqual(env, { A: "operator" });
    });

    it("gives the operator's environment when the caller passes none", () => {
      // Act
      const env = mergeKernelEnv({ A: "1" });

      // Assess
      assert.deepEqual(env, { A: "1" });
    });

    it("gives the caller's environment when the operator sets none", () => {
      // Act
      const env = mergeKernelEnv({}, { B: "2" });

      // Assess
      assert.deepEqual(env, { B: "2" });
    });

    it("returns a new object and leaves its inputs unchanged", () => {
      // Prepare
      const operator = { A: "operator" };
      const caller = { A: "caller", B: "caller" };

      // Act
      const env = mergeKernelEnv(operator, caller);
      env.C = "added";

      // Assess
      assert.notEqual(env, operator);
      assert.notEqual(env, caller);
      assert.deepEqual(operator, { A: "operator" });
      assert.deepEqual(caller, { A: "caller", B: "caller" });
    });
  });

  describe("reservedEnvReason", () => {
    const names: ReadonlyArray<[string, string]> = [
      ["PATH", "PATH is set by the sandbox"],
      ["path", "path is set by the sandbox"],
      ["HOME", "HOME is set by the sandbox"],
      ["PWD", "PWD is set by the sandbox"],
      ["SHELL", "SHELL is set by the sandbox"],
      ["USER", "USER is set by the sandbox"],
      ["LOGNAME", "LOGNAME is set by the sandbox"],
      ["TMPDIR", "TMPDIR is set by the sandbox"],
      ["MPLCONFIGDIR", "MPLCONFIGDIR is set by the sandbox"],
      ["LOCPATH", "LOCPATH is set by the sandbox"],
      ["NLSPATH", "NLSPATH is set by the sandbox"],
      ["HOSTALIASES", "HOSTALIASES is set by the sandbox"],
      ["TZDIR", "TZDIR is set by the sandbox"],
    ];
    for (const [key, reason] of names) {
      it(`reserves the name ${key}`, () => {
        // Act
        const actual = reservedEnvReason(key);

        // Assess
        assert.equal(actual, reason);
      });
    }

    const prefixed: ReadonlyArray<[string, string]> = [
      ["KERNEL_IMAGE", "KERNEL_"],
      ["kernel_image", "KERNEL_"],
      ["PYBOX_X", "PYBOX_"],
      ["AWS_SECRET_ACCESS_KEY", "AWS_"],
      ["aws_region", "AWS_"],
      ["LD_PRELOAD", "LD_"],
      ["LD_LIBRARY_PATH", "LD_"],
      ["DYLD_INSERT_LIBRARIES", "DYLD_"],
      ["PYTHONPATH", "PYTHON"],
      ["PYTHONSTARTUP", "PYTHON"],
      ["PythonHome", "PYTHON"],
      ["JPY_PARENT_PID", "JPY_"],
      ["JUPYTER_CONFIG_DIR", "JUPYTER"],
      ["IPYTHONDIR", "IPYTHON"],
      ["EG_IMPERSONATION_ENABLED", "EG_"],
      ["GLIBC_TUNABLES", "GLIBC_"],
      ["MALLOC_ARENA_MAX", "MALLOC_"],
      ["GCONV_PATH", "GCONV"],
    ];
    for (const [key, prefix] of prefixed) {
      it(`reserves ${key} by its prefix ${prefix}`, () => {
        // Act
        const actual = reservedEnvReason(key);

        // Assess
        assert.equal(actual, `variables starting with ${prefix} are operator configuration`);
      });
    }

    for (const key of [
      "MODEL",
      "MY_PATH",
      "PATHS",
      "HOMEPAGE",
      "KERNEL",
      "KERNELS",
      "EGG_DIR",
      "_",
      "data_dir",
    ]) {
      it(`allows ${key}`, () => {
        // Act
        const actual = reservedEnvReason(key);

        // Assess
        assert.equal(actual, undefined);
      });
    }
  });

  describe("limits", () => {
    it("allows 64 variables of up to 4096 characters", () => {
      // Assess
      assert.deepEqual([MAX_CALLER_ENV_ENTRIES, MAX_CALLER_ENV_VALUE], [64, 4_096]);
    });

    it("allows variable names of 1 to 128 word characters not starting with a digit", () => {
      // Assess
      assert.deepEqual(
        ["A", "_a1", `A${"b".repeat(127)}`, `A${"b".repeat(128)}`, "1A", "A-B", ""].map((key) =>
          CALLER_ENV_KEY.test(key),
        ),
        [true, true, true, false, false, false, false],
      );
    });
  });
});
