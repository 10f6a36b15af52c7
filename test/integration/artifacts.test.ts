import assert from "node:assert/strict";
import { mkdtemp, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../lib/config.ts";
import type { RunResult } from "../../lib/core/run-result.ts";
import { type EmbeddedDynamo, ensureTable, LOCAL_AWS, startEmbeddedDynamo } from "../../lib/dev/dynamodb.ts";
import { createRuntime } from "../../lib/runtime.ts";
import type { SandboxService } from "../../lib/sandbox/service.ts";

const OWNER = "artist";

/** The paths a result lists, in its order. */
const paths = (result: RunResult) => result.artifacts.map((artifact) => artifact.path);

/**
 * The files a run made (RunResult `artifacts`), on real local kernels through the sandbox service:
 * measured in the kernel after each run of the caller's code, against what it had seen before.
 */
describe("artifacts", { timeout: 180_000 }, () => {
  let dynamo: EmbeddedDynamo;
  let stateDir: string;
  let work: string;
  let sandbox: SandboxService;

  /** Runs `code` in kernel `k` and insists it ran as `status` says. */
  async function run(kernelId: string, code: string, status: RunResult["status"] = "ok"): Promise<RunResult> {
    const result = await sandbox.run(OWNER, kernelId, code, { timeoutMs: 15_000 });
    assert.equal(result.status, status, JSON.stringify(result.error));
    return result;
  }

  before(async () => {
    dynamo = await startEmbeddedDynamo();
    stateDir = await mkdtemp(join(tmpdir(), "pybox-artifacts-"));
    work = await realpath(await mkdtemp(join(tmpdir(), "pybox-artifacts-work-")));
    const config = loadConfig({ PYBOX_STATE_DIR: stateDir, PYBOX_TABLE: "kernels" });
    await ensureTable(dynamo.endpoint, config.table);
    sandbox = (await createRuntime({ ...config, dynamodb: { ...LOCAL_AWS, endpoint: dynamo.endpoint } }))
      .sandbox;
    await sandbox.start(OWNER, { kernelId: "k", cwd: work });
  });

  after(async () => {
    await sandbox?.stopAll();
    await dynamo?.close();
    await rm(stateDir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  });

  describe("a run", () => {
    it("lists the chart it saved and the CSV it wrote, with their sizes and times", async () => {
      // Act
      const chart = await run(
        "k",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.savefig('chart.png')\nplt.close()",
      );
      const table = await run("k", "import pandas as pd\npd.DataFrame({'a': [1, 2, 3]}).to_csv('out.csv')");

      // Assess
      assert.deepEqual(paths(chart), ["chart.png"]);
      assert.deepEqual(paths(table), ["out.csv"]);
      for (const [result, name] of [
        [chart, "chart.png"],
        [table, "out.csv"],
      ] as const) {
        // From nanoseconds, as the kernel reads them: `mtimeMs` is a double and can round up a millisecond.
        const onDisk = await stat(join(work, name), { bigint: true });
        const [artifact] = result.artifacts;
        assert.equal(artifact?.size, Number(onDisk.size));
        assert.ok(onDisk.size > 0n);
        assert.equal(artifact?.mtime, new Date(Number(onDisk.mtimeNs / 1_000_000n)).toISOString());
      }
      assert.equal(chart.artifactsTruncated, undefined);
    });

    it("lists no file that was there unchanged, and a file changed again", async () => {
      // Prepare
      await run("k", "open('kept.txt', 'w').write('first')\nopen('again.txt', 'w').write('first')");

      // Act
      const nothing = await run("k", "x = 6 * 7");
      const again = await run("k", "open('again.txt', 'a').write(', second')");
      const sameBytes = await run("k", "open('kept.txt', 'w').write('first')");

      // Assess
      assert.deepEqual(nothing.artifacts, []);
      assert.deepEqual(
        again.artifacts.map(({ path, size }) => [path, size]),
        [["again.txt", 13]],
      );
      assert.deepEqual(
        paths(sameBytes),
        ["kept.txt"],
        "written again is made by this run, same bytes or not",
      );
    });

    it("names files in folders it made by their relative paths", async () => {
      // Act
      const result = await run(
        "k",
        "import os\nos.makedirs('plots/2026', exist_ok=True)\nopen('plots/2026/a.svg', 'w').write('<svg/>')",
      );

      // Assess
      assert.deepEqual(paths(result), ["plots/2026/a.svg"]);
    });

    it("never lists __pycache__, .ipynb_checkpoints, hidden upload files or other hidden ones", async () => {
      // Act
      const result = await run(
        "k",
        [
          "import os",
          "os.makedirs('__pycache__', exist_ok=True)",
          "open('__pycache__/m.cpython-311.pyc', 'wb').write(b'x')",
          "os.makedirs('sub/.ipynb_checkpoints', exist_ok=True)",
          "open('sub/.ipynb_checkpoints/n-checkpoint.ipynb', 'w').write('{}')",
          "open('.pybox-upload-x', 'w').write('partial')",
          "open('sub/.pybox-upload-y', 'w').write('partial')",
          "os.makedirs('.cache/lib', exist_ok=True)",
          "open('.cache/lib/index.json', 'w').write('{}')",
          "open('.hidden.csv', 'w').write('a')",
          "open('visible.txt', 'w').write('seen')",
        ].join("\n"),
      );

      // Assess
      assert.deepEqual(paths(result), ["visible.txt"], "the run was measured, and only this file counts");
    });

    it("lists the newest 100 of 150 files it made, newest first, and says there were more", async () => {
      // Act: distinct mtimes, a second apart, so "newest first" has one answer
      const result = await run(
        "k",
        [
          "import os",
          "os.makedirs('many', exist_ok=True)",
          "for i in range(150):",
          "    open(f'many/n{i:03}.txt', 'w').write('x' * i)",
          "    os.utime(f'many/n{i:03}.txt', (1_800_000_000 + i, 1_800_000_000 + i))",
        ].join("\n"),
      );

      // Assess
      assert.equal(result.artifacts.length, 100);
      assert.equal(result.artifactsTruncated, true);
      assert.deepEqual(
        paths(result),
        Array.from({ length: 100 }, (_, i) => `many/n${String(149 - i).padStart(3, "0")}.txt`),
      );
      assert.equal(result.artifacts[0]?.size, 149);
      assert.equal(result.artifacts[0]?.mtime, new Date((1_800_000_000 + 149) * 1000).toISOString());
    });

    it("that raised still lists the files it made before raising", async () => {
      // Act
      const result = await run("k", "open('partial.csv', 'w').write('a,b\\n1,2\\n')\n1 / 0", "error");

      // Assess
      assert.equal(result.error?.ename, "ZeroDivisionError");
      assert.deepEqual(
        result.artifacts.map(({ path, size }) => [path, size]),
        [["partial.csv", 8]],
      );
    });

    it("that timed out lists the files it made before the interrupt", async () => {
      // Act
      const result = await sandbox.run(
        OWNER,
        "k",
        "import time\nopen('slow.txt', 'w').write('s')\ntime.sleep(30)",
        {
          timeoutMs: 1_500,
        },
      );

      // Assess
      assert.equal(result.status, "timeout");
      assert.deepEqual(paths(result), ["slow.txt"]);
    });

    it("does not list a file that was uploaded before it, nor one deleted through the files API", async () => {
      // Prepare
      await sandbox.files.put(OWNER, "k", "upload.csv", Buffer.from("a,b\n"), undefined);
      await run("k", "open('doomed.txt', 'w').write('x')");
      await sandbox.files.remove(OWNER, "k", "doomed.txt");

      // Act
      const result = await run("k", "import pandas as pd\nlen(pd.read_csv('upload.csv').columns)");

      // Assess
      assert.deepEqual(result.data, [{ "text/plain": "2" }]);
      assert.deepEqual(result.artifacts, []);
    });

    it("counts, shows and remembers exactly as it would without the measuring", async () => {
      // Act
      const first = await run("k", "6 * 7");
      const underscore = await run("k", "_");
      const history = await run("k", "(In[-3], Out[len(In) - 3], len([k for k in Out if k > len(In) - 4]))");

      // Assess
      assert.deepEqual(first.data, [{ "text/plain": "42" }]);
      assert.equal(underscore.executionCount, (first.executionCount ?? 0) + 1);
      assert.deepEqual(underscore.data, [{ "text/plain": "42" }]);
      assert.deepEqual(history.data, [{ "text/plain": "('6 * 7', 42, 2)" }]);
    });
  });

  describe("a kernel's first run", () => {
    it("lists nothing that was in its working directory before it started", async () => {
      // Prepare
      const cwd = await realpath(await mkdtemp(join(tmpdir(), "pybox-artifacts-old-")));
      await writeFile(join(cwd, "old.csv"), "a\n1\n");

      try {
        await sandbox.start(OWNER, { kernelId: "fresh", cwd });

        // Act
        const result = await run("fresh", "import pandas as pd\npd.read_csv('old.csv').to_csv('new.csv')");

        // Assess
        assert.deepEqual(paths(result), ["new.csv"]);
      } finally {
        await sandbox.stop(OWNER, "fresh");
        await rm(cwd, { recursive: true, force: true });
      }
    });
  });
});
