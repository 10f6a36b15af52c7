import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig, PROJECT_ROOT } from "../../lib/config.ts";
import { ConfigError } from "../../lib/errors.ts";
import { loadOperatorEnv } from "../../lib/operator-env.ts";

/** Asserts `act` throws a ConfigError whose message matches `message`. */
function assertConfigError(act: () => unknown, message: RegExp): void {
  assert.throws(act, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.match(error.message, message);
    return true;
  });
}

describe("config", () => {
  let dir = "";
  let envFile = "";
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "pybox-config-test-"));
    envFile = join(dir, "kernel.env");
    writeFileSync(envFile, "A=file\nB=file\n");
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  describe("loadConfig", () => {
    it("uses the defaults for an empty environment", () => {
      // Act
      const config = loadConfig({});

      // Assess
      assert.deepEqual(config, {
        backend: "local",
        table: "pybox-kernels",
        dynamodb: {},
        operatorEnv: {},
        run: {
          defaultTimeoutMs: 20_000,
          maxTimeoutMs: 20_000,
          interruptGraceMs: 3_000,
          busyWaitMs: 10_000,
          maxCodeBytes: 262_144,
          maxOutputBytes: 4_194_304,
          maxOutputEntryBytes: 1_048_576,
        },
        asyncRun: { maxTimeoutMs: 840_000, maxResultBytes: 300_000, resultTtlSeconds: 86_400 },
        queue: { maxReceives: 5 },
        idleTimeoutSeconds: 3_600,
        maxKernelsPerCaller: 10,
        files: { maxFileBytes: 100 * 1024 ** 2 },
        startTimeoutMs: 25_000,
        keepConnectionsMs: 60_000,
        pool: { size: 0, maxAgeMs: 1_800_000 },
        metrics: false,
        tracing: false,
        recordTtlSeconds: 604_800,
        local: {
          python: join(PROJECT_ROOT, ".venv", "bin", "python"),
          stateDir: join(PROJECT_ROOT, ".pybox"),
          sandbox: "auto",
          limits: {
            memoryBytes: 4 * 1024 ** 3,
            processes: 256,
            fileBytes: 1024 ** 3,
            cpuSeconds: 3600,
            tmpBytes: 512 * 1024 ** 2,
          },
        },
        port: 8080,
      });
    });

    it("reads every variable it is given", () => {
      // Prepare
      const env = {
        PYBOX_BACKEND: "local",
        PYBOX_TABLE: "my-table",
        PYBOX_DYNAMODB_ENDPOINT: "http://localhost:4567",
        AWS_REGION: "eu-west-1",
        PYBOX_PYTHON: "/opt/py/bin/python",
        PYBOX_STATE_DIR: "/var/pybox",
        PYBOX_LOCAL_SANDBOX: "bwrap",
        PYBOX_LOCAL_MEMORY_BYTES: "1073741824",
        PYBOX_LOCAL_MAX_PROCESSES: "32",
        PYBOX_LOCAL_MAX_FILE_BYTES: "2097152",
        PYBOX_LOCAL_CPU_SECONDS: "60",
        PYBOX_LOCAL_TMP_BYTES: "4194304",
        PYBOX_RUN_TIMEOUT_MS: "1000",
        PYBOX_MAX_RUN_TIMEOUT_MS: "2000",
        PYBOX_INTERRUPT_GRACE_MS: "300",
        PYBOX_START_TIMEOUT_MS: "4000",
        PYBOX_KEEP_CONNECTIONS_MS: "0",
        PYBOX_POOL_SIZE: "3",
        PYBOX_POOL_MAX_AGE_SECONDS: "600",
        PYBOX_BUSY_WAIT_MS: "0",
        PYBOX_MAX_CODE_BYTES: "512",
        PYBOX_MAX_OUTPUT_BYTES: "2048",
        PYBOX_MAX_OUTPUT_ENTRY_BYTES: "1536",
        PYBOX_RECORD_TTL_SECONDS: "3600",
        PYBOX_QUEUE_URL: "http://127.0.0.1:9324/000000000000/runs.fifo",
        PYBOX_SQS_ENDPOINT: "http://127.0.0.1:9324",
        PYBOX_QUEUE_MAX_RECEIVES: "3",
        PYBOX_MAX_ASYNC_RUN_TIMEOUT_MS: "60000",
        PYBOX_MAX_ASYNC_RESULT_BYTES: "20000",
        PYBOX_RUN_RESULT_TTL_SECONDS: "600",
        PYBOX_IDLE_TIMEOUT_SECONDS: "5",
        PYBOX_MAX_KERNELS_PER_CALLER: "3",
        PYBOX_MAX_FILE_BYTES: "1048576",
        PORT: "9090",
      };

      // Act
      const config = loadConfig(env);

      // Assess
      assert.deepEqual(config, {
        backend: "local",
        table: "my-table",
        dynamodb: { endpoint: "http://localhost:4567", region: "eu-west-1" },
        operatorEnv: {},
        run: {
          defaultTimeoutMs: 1_000,
          maxTimeoutMs: 2_000,
          interruptGraceMs: 300,
          busyWaitMs: 0,
          maxCodeBytes: 512,
          maxOutputBytes: 2_048,
          maxOutputEntryBytes: 1_536,
        },
        asyncRun: { maxTimeoutMs: 60_000, maxResultBytes: 20_000, resultTtlSeconds: 600 },
        queue: {
          maxReceives: 3,
          url: "http://127.0.0.1:9324/000000000000/runs.fifo",
          endpoint: "http://127.0.0.1:9324",
          region: "eu-west-1",
        },
        idleTimeoutSeconds: 5,
        maxKernelsPerCaller: 3,
        files: { maxFileBytes: 1_048_576 },
        startTimeoutMs: 4_000,
        keepConnectionsMs: 0,
        pool: { size: 3, maxAgeMs: 600_000 },
        metrics: false,
        tracing: false,
        recordTtlSeconds: 3_600,
        local: {
          python: "/opt/py/bin/python",
          stateDir: "/var/pybox",
          sandbox: "bwrap",
          limits: {
            memoryBytes: 1024 ** 3,
            processes: 32,
            fileBytes: 2 * 1024 ** 2,
            cpuSeconds: 60,
            tmpBytes: 4 * 1024 ** 2,
          },
        },
        port: 9090,
      });
    });

    it("refuses a record TTL no longer than the idle time (TTL would drop live kernels' records)", () => {
      assert.throws(
        () => loadConfig({ PYBOX_RECORD_TTL_SECONDS: "3600", PYBOX_IDLE_TIMEOUT_SECONDS: "3600" }),
        /PYBOX_RECORD_TTL_SECONDS must exceed PYBOX_IDLE_TIMEOUT_SECONDS/,
      );
    });

    it("refuses an output entry cap above the total output cap, naming both variables", () => {
      assertConfigError(
        () => loadConfig({ PYBOX_MAX_OUTPUT_BYTES: "65536", PYBOX_MAX_OUTPUT_ENTRY_BYTES: "65537" }),
        /^invalid configuration: PYBOX_MAX_OUTPUT_ENTRY_BYTES \(65537\) exceeds PYBOX_MAX_OUTPUT_BYTES \(65536\)/,
      );
    });

    it("reads the folders a sandboxed cwd must be inside, and refuses a relative one", () => {
      assert.deepEqual(loadConfig({ PYBOX_LOCAL_CWD_ROOTS: "/srv/data:/home/dev/work/" }).local.cwdRoots, [
        "/srv/data",
        "/home/dev/work",
      ]);
      assertConfigError(
        () => loadConfig({ PYBOX_LOCAL_CWD_ROOTS: "/srv/data:data" }),
        /'data' is not an absolute path/,
      );
    });

    it("refuses a sandbox mode it does not know, and kernel limits too small to start Python", () => {
      assertConfigError(() => loadConfig({ PYBOX_LOCAL_SANDBOX: "docker" }), /PYBOX_LOCAL_SANDBOX/);
      assertConfigError(() => loadConfig({ PYBOX_LOCAL_MAX_PROCESSES: "4" }), /PYBOX_LOCAL_MAX_PROCESSES/);
      assertConfigError(
        () => loadConfig({ PYBOX_LOCAL_MEMORY_BYTES: "1048576" }),
        /PYBOX_LOCAL_MEMORY_BYTES/,
      );
    });

    it("accepts an output entry cap equal to the total", () => {
      // Act
      const config = loadConfig({ PYBOX_MAX_OUTPUT_BYTES: "65536", PYBOX_MAX_OUTPUT_ENTRY_BYTES: "65536" });

      // Assess
      assert.deepEqual([config.run.maxOutputBytes, config.run.maxOutputEntryBytes], [65_536, 65_536]);
    });

    it("lowers the default output entry cap to a total cap set below it", () => {
      // Act
      const config = loadConfig({ PYBOX_MAX_OUTPUT_BYTES: "65536" });

      // Assess
      assert.equal(config.run.maxOutputEntryBytes, 65_536);
    });

    it("resolves a relative state directory and python to absolute paths", () => {
      // Act
      const config = loadConfig({ PYBOX_STATE_DIR: "state", PYBOX_PYTHON: "bin/python" });

      // Assess
      assert.equal(config.local.stateDir, resolve("state"));
      assert.equal(config.local.python, resolve("bin/python"));
    });

    describe("kernel profiles", () => {
      it("starts kernels with no profile and the project's .venv by default", () => {
        // Act
        const config = loadConfig({});

        // Assess
        assert.equal(config.local.python, join(PROJECT_ROOT, ".venv", "bin", "python"));
        assert.equal(config.local.profileDir, undefined);
      });

      it("gives the tablegpt preset its own environment and the profile tablegpt-agent installs in it", () => {
        // Act
        const config = loadConfig({ PYBOX_KERNEL_PROFILE: "tablegpt" });

        // Assess
        const venv = join(PROJECT_ROOT, ".venv-tablegpt");
        assert.equal(config.local.python, join(venv, "bin", "python"));
        assert.equal(config.local.profileDir, join(venv, "share", "ipykernel", "profile", "tablegpt"));
      });

      it("takes the preset's profile from the operator's interpreter when PYBOX_PYTHON is set", () => {
        // Act
        const config = loadConfig({
          PYBOX_KERNEL_PROFILE: "tablegpt",
          PYBOX_PYTHON: "/opt/agent/bin/python",
        });

        // Assess
        assert.equal(config.local.python, "/opt/agent/bin/python");
        assert.equal(config.local.profileDir, "/opt/agent/share/ipykernel/profile/tablegpt");
      });

      it("lets PYBOX_KERNEL_PROFILE_DIR name the profile, resolved to an absolute path", () => {
        // Act
        const own = loadConfig({ PYBOX_KERNEL_PROFILE_DIR: "profiles/team" });
        const both = loadConfig({
          PYBOX_KERNEL_PROFILE: "tablegpt",
          PYBOX_KERNEL_PROFILE_DIR: "/srv/profile",
        });

        // Assess
        assert.equal(own.local.profileDir, resolve("profiles/team"));
        assert.equal(own.local.python, join(PROJECT_ROOT, ".venv", "bin", "python"));
        assert.equal(both.local.profileDir, "/srv/profile");
        assert.equal(both.local.python, join(PROJECT_ROOT, ".venv-tablegpt", "bin", "python"));
      });
    });

    describe("cluster kernel resources", () => {
      const cluster = {
        PYBOX_BACKEND: "cluster",
        PYBOX_KUBECONFIG: "/etc/kube/config",
        PYBOX_KERNEL_ENV: JSON.stringify({ KERNEL_IMAGE: "elyra/kernel-py:3.2.3" }),
      };

      it("bounds each kernel container by default: 1 CPU, 4 GiB, 2 GiB of ephemeral storage", () => {
        // Act
        const config = loadConfig(cluster);

        // Assess
        assert.deepEqual(config.cluster?.resources, { cpu: "1", memory: "4Gi", "ephemeral-storage": "2Gi" });
      });

      it("takes PYBOX_CLUSTER_CPU, _MEMORY and _EPHEMERAL_STORAGE as Kubernetes quantities", () => {
        // Act
        const config = loadConfig({
          ...cluster,
          PYBOX_CLUSTER_CPU: "500m",
          PYBOX_CLUSTER_MEMORY: "1.5Gi",
          PYBOX_CLUSTER_EPHEMERAL_STORAGE: "512Mi",
        });

        // Assess
        assert.deepEqual(config.cluster?.resources, {
          cpu: "500m",
          memory: "1.5Gi",
          "ephemeral-storage": "512Mi",
        });
      });

      it("refuses a memory that is not a quantity, naming the variable", () => {
        assertConfigError(
          () => loadConfig({ ...cluster, PYBOX_CLUSTER_MEMORY: "lots" }),
          /PYBOX_CLUSTER_MEMORY/,
        );
      });
    });

    it("treats blank optional text as unset", () => {
      // Act
      const config = loadConfig({ AWS_REGION: "  ", PYBOX_DYNAMODB_ENDPOINT: "" });

      // Assess
      assert.deepEqual(config.dynamodb, {});
    });

    const invalid: ReadonlyArray<[string, Record<string, string>, string]> = [
      ["a run timeout that is not a number", { PYBOX_RUN_TIMEOUT_MS: "soon" }, "PYBOX_RUN_TIMEOUT_MS"],
      ["a run timeout that is not an integer", { PYBOX_RUN_TIMEOUT_MS: "1500.5" }, "PYBOX_RUN_TIMEOUT_MS"],
      ["a run timeout below 100 ms", { PYBOX_RUN_TIMEOUT_MS: "99" }, "PYBOX_RUN_TIMEOUT_MS"],
      ["a max code size of 0", { PYBOX_MAX_CODE_BYTES: "0" }, "PYBOX_MAX_CODE_BYTES"],
      ["a port above 65535", { PORT: "65536" }, "PORT"],
      ["a negative port", { PORT: "-1" }, "PORT"],
      ["an unknown backend", { PYBOX_BACKEND: "kubernetes" }, "PYBOX_BACKEND"],
      ["an unknown kernel profile preset", { PYBOX_KERNEL_PROFILE: "jupyter" }, "PYBOX_KERNEL_PROFILE"],
      ["a table name that is too short", { PYBOX_TABLE: "ab" }, "PYBOX_TABLE"],
      [
        "an endpoint that is not a URL",
        { PYBOX_DYNAMODB_ENDPOINT: "localhost port 8000" },
        "PYBOX_DYNAMODB_ENDPOINT",
      ],
      ["a start timeout below 1 s", { PYBOX_START_TIMEOUT_MS: "999" }, "PYBOX_START_TIMEOUT_MS"],
      ["a record TTL below 60 s", { PYBOX_RECORD_TTL_SECONDS: "59" }, "PYBOX_RECORD_TTL_SECONDS"],
      [
        "an output entry cap below 1 KiB",
        { PYBOX_MAX_OUTPUT_ENTRY_BYTES: "1023" },
        "PYBOX_MAX_OUTPUT_ENTRY_BYTES",
      ],
      [
        "an output entry cap that is not a number",
        { PYBOX_MAX_OUTPUT_ENTRY_BYTES: "1MB" },
        "PYBOX_MAX_OUTPUT_ENTRY_BYTES",
      ],
    ];
    for (const [name, env, variable] of invalid) {
      it(`rejects ${name} with a ConfigError naming ${variable}`, () => {
        assertConfigError(() => loadConfig(env), new RegExp(`^invalid configuration: .*\\b${variable}: `));
      });
    }

    it("names every invalid variable at once", () => {
      assertConfigError(
        () => loadConfig({ PORT: "http", PYBOX_BUSY_WAIT_MS: "-5" }),
        /^invalid configuration: (?=.*\bPORT: )(?=.*\bPYBOX_BUSY_WAIT_MS: )/,
      );
    });

    it("rejects a default run timeout above the maximum", () => {
      assertConfigError(
        () => loadConfig({ PYBOX_RUN_TIMEOUT_MS: "20001" }),
        /^invalid configuration: PYBOX_RUN_TIMEOUT_MS exceeds PYBOX_MAX_RUN_TIMEOUT_MS$/,
      );
    });

    it("rejects a maximum run timeout below the default", () => {
      assertConfigError(
        () => loadConfig({ PYBOX_MAX_RUN_TIMEOUT_MS: "19999" }),
        /PYBOX_RUN_TIMEOUT_MS exceeds PYBOX_MAX_RUN_TIMEOUT_MS/,
      );
    });

    it("keeps synchronous runs under API Gateway's 30 s: a larger maximum is refused", () => {
      assertConfigError(() => loadConfig({ PYBOX_MAX_RUN_TIMEOUT_MS: "28001" }), /PYBOX_MAX_RUN_TIMEOUT_MS/);
    });

    it("accepts a default run timeout equal to the maximum", () => {
      // Act
      const config = loadConfig({ PYBOX_RUN_TIMEOUT_MS: "5000", PYBOX_MAX_RUN_TIMEOUT_MS: "5000" });

      // Assess
      assert.deepEqual([config.run.defaultTimeoutMs, config.run.maxTimeoutMs], [5_000, 5_000]);
    });

    it("merges the operator's kernel env file and JSON", () => {
      // Act
      const config = loadConfig({ PYBOX_KERNEL_ENV_FILE: envFile, PYBOX_KERNEL_ENV: '{"B":"json","C":1}' });

      // Assess
      assert.deepEqual(config.operatorEnv, { A: "file", B: "json", C: "1" });
    });

    it("fails on an unreadable operator env file", () => {
      assertConfigError(
        () => loadConfig({ PYBOX_KERNEL_ENV_FILE: join(dir, "missing.env") }),
        /^PYBOX_KERNEL_ENV_FILE cannot be read: /,
      );
    });
  });

  describe("loadOperatorEnv", () => {
    it("gives an empty environment when neither source is set", () => {
      // Act
      const env = loadOperatorEnv(undefined, undefined);

      // Assess
      assert.deepEqual(env, {});
    });

    it("reads the dotenv file alone", () => {
      // Act
      const env = loadOperatorEnv(envFile, undefined);

      // Assess
      assert.deepEqual(env, { A: "file", B: "file" });
    });

    it("lets the JSON object win over the file and stringifies its values", () => {
      // Act
      const env = loadOperatorEnv(envFile, '{"B":"json","C":1}');

      // Assess
      assert.deepEqual(env, { A: "file", B: "json", C: "1" });
    });

    it("stringifies booleans and numbers in the JSON", () => {
      // Act
      const env = loadOperatorEnv(undefined, '{"FLAG":true,"OFF":false,"RATIO":0.5}');

      // Assess
      assert.deepEqual(env, { FLAG: "true", OFF: "false", RATIO: "0.5" });
    });

    it("reads dotenv comments, quotes and export-less lines as pybox does", () => {
      // Prepare
      const file = join(dir, "quoted.env");
      writeFileSync(file, "# operator settings\nQUOTED=\"a b\"\nSINGLE='c'\nEMPTY=\n");

      // Act
      const env = loadOperatorEnv(file, undefined);

      // Assess
      assert.deepEqual(env, { QUOTED: "a b", SINGLE: "c", EMPTY: "" });
    });

    it("rejects JSON that does not parse", () => {
      assertConfigError(
        () => loadOperatorEnv(undefined, "{B: json}"),
        /^PYBOX_KERNEL_ENV is not valid JSON$/,
      );
    });

    for (const json of ['["A=1"]', "[]", '"A=1"', "42", "null", '{"A":{"nested":true}}', '{"A":null}']) {
      it(`rejects the JSON ${json}, which is not an object of strings`, () => {
        assertConfigError(
          () => loadOperatorEnv(undefined, json),
          /^PYBOX_KERNEL_ENV must be a JSON object of strings$/,
        );
      });
    }

    it("rejects a missing file", () => {
      // Prepare
      const missing = join(dir, "does-not-exist.env");

      // Act + Assess
      assertConfigError(
        () => loadOperatorEnv(missing, undefined),
        new RegExp(
          `^PYBOX_KERNEL_ENV_FILE cannot be read: ${missing.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`,
        ),
      );
    });

    it("rejects a directory given as the file", () => {
      assertConfigError(() => loadOperatorEnv(dir, undefined), /^PYBOX_KERNEL_ENV_FILE cannot be read: /);
    });
  });
});
