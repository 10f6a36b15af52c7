import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { ApiClient } from "../support/api.ts";

/** What a backend's test harness provides: the product's HTTP API, served with that backend. */
export interface BackendHarness {
  api: ApiClient;
  /** Stops everything the harness started. */
  stop(): Promise<void>;
  /**
   * Kills a kernel's process from outside, as a crash would. Defaults to the pid the kernel reports,
   * which is right where the kernel runs in the host's PID namespace.
   */
  killKernel?(kernelId: string): Promise<void>;
}

/** What a backend's peer does that the suite must allow for. */
export interface BackendTraits {
  /** Label in the suite's name (defaults to the backend name). */
  label?: string;
  /** The peer restarts a kernel that died between runs on its own (jupyter_server's autorestart). */
  restartsDeadKernels?: boolean;
  /** The peer ignores the kernel environment we send, so `cwd` (KERNEL_WORKING_DIR) cannot reach the kernel. */
  ignoresKernelEnv?: boolean;
  /**
   * The kernel's files are on this machine's disk (local, a gateway here); a cluster kernel's cwd is
   * its pod's own, seen through the files API only.
   */
  sharedDisk?: boolean;
}

/** How long until a dead kernel must be reported; "within seconds", not the run's timeout. */
const DEATH_NOTICE_MS = 10_000;

/**
 * The behaviour every backend must show through the HTTP API: pybox's own test list, rich output,
 * timeouts, get-or-create, isolation, dead kernels and bad input. One suite, run per backend.
 */
export function describeBackendBehaviour(
  backend: string,
  startHarness: () => Promise<BackendHarness>,
  traits: BackendTraits = {},
): void {
  describe(`sandbox API on the ${traits.label ?? backend} backend`, { timeout: 300_000 }, () => {
    let harness: BackendHarness;
    let api: ApiClient;
    const kernel = "main";

    before(async () => {
      harness = await startHarness();
      api = harness.api.as("alice");
      const started = await api.start({ kernelId: kernel });
      assert.equal(started.status, 201, started.text);
    });

    after(async () => {
      await harness?.stop();
    });

    describe("pybox parity", () => {
      it("returns print output as one text/plain entry", async () => {
        const res = await api.run(kernel, "print('hello')");

        assert.equal(res.status, 200);
        assert.deepEqual(res.body.data, [{ "text/plain": "hello\n" }]);
        assert.equal(res.body.error, null);
        assert.equal(res.body.status, "ok");
      });

      it("keeps variables between runs", async () => {
        await api.run(kernel, "a = 21");

        const res = await api.run(kernel, "a * 2");

        assert.deepEqual(res.body.data, [{ "text/plain": "42" }]);
      });

      it("merges several prints into one entry", async () => {
        const res = await api.run(kernel, "a = 1\nprint(a)\nprint(a)");

        assert.deepEqual(res.body.data, [{ "text/plain": "1\n1\n" }]);
      });

      it("gives data [] and the exception's name for an error", async () => {
        const res = await api.run(kernel, "1 / 0");

        assert.equal(res.status, 200);
        assert.equal(res.body.status, "error");
        assert.deepEqual(res.body.data, []);
        assert.equal(res.body.error?.ename, "ZeroDivisionError");
        assert.equal(res.body.error?.evalue, "division by zero");
        assert.ok(res.body.error?.traceback.some((line) => line.includes("ZeroDivisionError")));
        assert.ok(
          !res.body.error?.traceback.join("").includes("\u001b["),
          "traceback has no ANSI colour codes",
        );
      });

      it("gives data [] when nothing is displayed", async () => {
        const res = await api.run(kernel, "b = 3");

        assert.equal(res.body.status, "ok");
        assert.deepEqual(res.body.data, []);
      });

      it("keeps the output before a failing line", async () => {
        const res = await api.run(kernel, "print('before')\nraise ValueError('boom')\nprint('after')");

        assert.deepEqual(res.body.data, [{ "text/plain": "before\n" }]);
        assert.equal(res.body.error?.ename, "ValueError");
        assert.equal(res.body.error?.evalue, "boom");
      });

      it("interrupts code that runs past its timeout and keeps the kernel usable", async () => {
        await api.run(kernel, "survivor = 'still here'");
        const started = Date.now();

        const res = await api.run(kernel, "import time\nprint('started')\ntime.sleep(30)", 1_000);

        assert.equal(res.status, 200);
        assert.equal(res.body.status, "timeout");
        assert.equal(res.body.error?.ename, "TimeoutError");
        assert.deepEqual(res.body.data, [{ "text/plain": "started\n" }]);
        assert.ok(Date.now() - started < 15_000, "the run ended long before the code would have");
        assert.equal(await api.eval(kernel, "survivor"), "'still here'");
      });

      if (traits.ignoresKernelEnv) {
        it("starts a kernel with cwd even though this peer cannot honour it (documented)", async () => {
          const started = await api.start({ kernelId: "with-cwd", cwd: "/tmp" });

          assert.equal(started.status, 201, started.text);
          assert.equal(await api.eval("with-cwd", "6 * 7"), "42");
          await api.stop("with-cwd");
        });
      } else {
        it("honours cwd", async () => {
          const cwd = await mkdtemp(join(tmpdir(), "pybox-cwd-"));
          try {
            const started = await api.start({ kernelId: "with-cwd", cwd });
            assert.equal(started.status, 201, started.text);

            const seen = await api.eval("with-cwd", "import os\nos.getcwd()");
            await api.run("with-cwd", "open('made-here.txt', 'w').write('hi')");

            assert.equal(seen, `'${cwd}'`);
            assert.equal((await api.getFile("with-cwd", "made-here.txt")).text, "hi");
            if (traits.sharedDisk !== false)
              assert.equal(await readFile(join(cwd, "made-here.txt"), "utf8"), "hi");
          } finally {
            await api.stop("with-cwd");
            await rm(cwd, { recursive: true, force: true });
          }
        });
      }
    });

    describe("odd messages from the kernel", () => {
      it("survives a cell that sends a display message with unusual content", async () => {
        const code = "print('a')\nfrom IPython.display import clear_output\nclear_output(wait=1)\nprint('b')";

        const res = await api.run(kernel, code);

        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.status, "ok");
        assert.match(String(res.body.data.at(-1)?.["text/plain"]), /b\n$/);
        assert.equal(await api.eval(kernel, "6 * 7"), "42");
      });
    });

    describe("rich output", () => {
      it("shows a pandas DataFrame as text/html with text/plain beside it", async () => {
        const res = await api.run(
          kernel,
          "import pandas as pd\npd.DataFrame({'x': [1, 2], 'y': ['a', 'b']})",
        );

        assert.equal(res.body.status, "ok", res.text);
        assert.equal(res.body.data.length, 1);
        const bundle = res.body.data[0] ?? {};
        assert.match(String(bundle["text/html"]), /<table[\s\S]*<th>x<\/th>/);
        assert.match(String(bundle["text/plain"]), /x\s+y/);
      });

      it("shows a matplotlib figure as image/png", async () => {
        const code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()";

        const res = await api.run(kernel, code);

        assert.equal(res.body.status, "ok", res.text);
        const image = res.body.data.find((bundle) => "image/png" in bundle);
        assert.ok(image, `no image in ${res.text.slice(0, 300)}`);
        const png = Buffer.from(String(image["image/png"]), "base64");
        assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
      });
    });

    describe("kernel lifecycle", () => {
      it("starts with a generated id when none is given", async () => {
        const res = await api.start();

        assert.equal(res.status, 201);
        assert.match(String(res.body.kernelId), /^[0-9a-f-]{36}$/);
        assert.equal(res.body.backend, backend);
        assert.equal(res.body.state, "idle");
        await api.stop(String(res.body.kernelId));
      });

      it("returns the caller's live kernel on a second start (get-or-create)", async () => {
        await api.run(kernel, "marker = 'same kernel'");

        const again = await api.start({ kernelId: kernel });

        assert.equal(again.status, 200);
        assert.equal(again.body.kernelId, kernel);
        assert.equal(again.body.restarted, undefined);
        assert.equal(await api.eval(kernel, "marker"), "'same kernel'");
      });

      it("makes exactly one kernel for concurrent starts of one id", async () => {
        const starts = await Promise.all(Array.from({ length: 6 }, () => api.start({ kernelId: "racy" })));

        const statuses = starts.map((res) => res.status).sort();
        assert.deepEqual(statuses, [200, 200, 200, 200, 200, 201]);
        await api.run("racy", "import os\nfirst_pid = os.getpid()");
        const pids = await Promise.all(starts.map(() => api.eval("racy", "first_pid == os.getpid()")));
        assert.deepEqual(new Set(pids), new Set(["True"]));
        await api.stop("racy");
      });

      it("reports the kernel record", async () => {
        const res = await api.get(kernel);

        assert.equal(res.status, 200);
        assert.equal(res.body.kernelId, kernel);
        assert.equal(res.body.backend, backend);
        assert.equal(res.body.state, "idle");
        assert.ok(Date.parse(String(res.body.createdAt)) <= Date.parse(String(res.body.lastActivityAt)));
        assert.deepEqual(Object.keys(res.body).sort(), [
          "backend",
          "createdAt",
          "kernelId",
          "lastActivityAt",
          "state",
        ]);
      });

      it("stops idempotently and then knows the kernel no more", async () => {
        await api.start({ kernelId: "short-lived" });

        const first = await api.stop("short-lived");
        const second = await api.stop("short-lived");
        const run = await api.run("short-lived", "1");
        const get = await api.get("short-lived");

        assert.equal(first.status, 204);
        assert.equal(second.status, 204);
        assert.equal(run.status, 404);
        assert.equal((run.body as unknown as { error: { code: string } }).error.code, "NOT_FOUND");
        assert.equal(get.status, 404);
      });
    });

    describe("a kernel that ignores the interrupt", () => {
      it("answers timeout, restarts the stuck kernel with its spec and says so; the next run needs no start", async () => {
        await api.start({ kernelId: "stubborn", env: { STUBBORN_MARK: "kept" } });
        await api.run("stubborn", "before = 1");
        const markBefore = await api.eval("stubborn", "__import__('os').environ.get('STUBBORN_MARK')");
        const code =
          "import time\nwhile True:\n    try:\n        time.sleep(60)\n    except KeyboardInterrupt:\n        pass";

        const res = await api.run("stubborn", code, 1_000);

        assert.equal(res.status, 200, res.text);
        assert.equal(res.body.status, "timeout");
        assert.equal((res.body as unknown as { restarted?: boolean }).restarted, true, res.text);
        assert.match(res.body.error?.evalue ?? "", /did not respond to the interrupt, so it was restarted/);
        assert.equal((await api.get("stubborn")).body.state, "idle");
        assert.equal(await api.eval("stubborn", "'before' in globals()"), "False");
        // The fresh kernel gets the same env as the first (some gateways pass only KERNEL_* variables).
        assert.equal(await api.eval("stubborn", "__import__('os').environ.get('STUBBORN_MARK')"), markBefore);
        await api.stop("stubborn");
      });
    });

    describe("concurrent runs on one kernel", () => {
      it("runs them one at a time, and a timeout interrupts only its own code", async () => {
        await api.run(kernel, "import time\nlog = []");

        const [slow, quick] = await Promise.all([
          api.run(kernel, "log.append('slow start')\ntime.sleep(20)\nlog.append('slow end')", 1_500),
          (async () => {
            await new Promise((resolve) => setTimeout(resolve, 300));
            return api.run(kernel, "time.sleep(0.5)\nlog.append('quick')\n'quick done'");
          })(),
        ]);

        assert.equal(slow.body.status, "timeout");
        assert.equal(quick.status, 200, quick.text);
        assert.equal(quick.body.status, "ok", quick.text);
        assert.deepEqual(quick.body.data, [{ "text/plain": "'quick done'" }]);
        assert.equal(await api.eval(kernel, "log"), "['slow start', 'quick']");
      });
    });

    describe("owner isolation", () => {
      it("hides one caller's kernel from another and leaves it untouched", async () => {
        const mallory = harness.api.as("mallory");
        await api.run(kernel, "secret = 'alice only'");

        const get = await mallory.get(kernel);
        const run = await mallory.run(kernel, "secret = 'overwritten'");
        const stop = await mallory.stop(kernel);

        assert.equal(get.status, 404);
        assert.equal(run.status, 404);
        assert.equal(
          stop.status,
          204,
          "stopping a kernel you do not have is the same as stopping a gone one",
        );
        assert.equal(await api.eval(kernel, "secret"), "'alice only'");
        assert.equal((await api.get(kernel)).body.state, "idle");
      });

      it("gives two callers separate kernels under the same id", async () => {
        const bob = harness.api.as("bob");
        const started = await bob.start({ kernelId: kernel });

        await bob.run(kernel, "secret = 'bob'");

        assert.equal(started.status, 201);
        assert.equal(await api.eval(kernel, "secret"), "'alice only'");
        assert.equal(await bob.eval(kernel, "secret"), "'bob'");
        await bob.stop(kernel);
      });
    });

    describe("dead kernels", () => {
      it("ends a run whose kernel dies with a clear error within seconds, and start revives it", async () => {
        await api.start({ kernelId: "doomed" });
        await api.run("doomed", "value = 1");
        const started = Date.now();

        const res = await api.run(
          "doomed",
          "import os, signal, time\ntime.sleep(0.2)\nos.kill(os.getpid(), signal.SIGKILL)",
          15_000,
        );

        assert.ok(Date.now() - started < DEATH_NOTICE_MS, `took ${Date.now() - started} ms`);
        assert.equal(res.status, 409, res.text);
        const error = (res.body as unknown as { error: { code: string; message: string } }).error;
        assert.equal(error.code, "KERNEL_DEAD");
        assert.match(error.message, /died/);
        assert.equal((await api.get("doomed")).body.state, "dead");
        const again = await api.run("doomed", "1");
        assert.equal(again.status, 409);
        const revived = await api.start({ kernelId: "doomed" });
        assert.equal(revived.status, 201);
        assert.equal(revived.body.restarted, true);
        const lost = await api.run("doomed", "value");
        assert.equal(lost.body.error?.ename, "NameError");
        await api.stop("doomed");
      });

      it("notices a kernel that died between runs", async () => {
        await api.start({ kernelId: "gone-quietly" });
        await api.run("gone-quietly", "kept = 1");
        if (harness.killKernel) await harness.killKernel("gone-quietly");
        else process.kill(Number(await api.eval("gone-quietly", "import os\nos.getpid()")), "SIGKILL");
        await new Promise((resolve) => setTimeout(resolve, 300));
        const started = Date.now();
        const res = await api.run("gone-quietly", "'kept' in globals()");

        assert.ok(Date.now() - started < DEATH_NOTICE_MS);
        if (traits.restartsDeadKernels && res.status === 200) {
          // The peer had already replaced the kernel: the run went to the fresh one, which says so.
          assert.equal((res.body as unknown as { restarted?: boolean }).restarted, true, res.text);
          assert.deepEqual(res.body.data, [{ "text/plain": "False" }]);
        } else {
          assert.equal(res.status, 409, res.text);
          const revived = await api.start({ kernelId: "gone-quietly" });
          assert.equal(revived.status, 201);
          assert.equal(revived.body.restarted, true);
        }
        assert.equal(await api.eval("gone-quietly", "6 * 7"), "42");
        await api.stop("gone-quietly");
      });
    });

    describe("bad input", () => {
      const badRequests: Array<[string, string, string, unknown, number]> = [
        ["malformed JSON", "POST", `/kernels/${kernel}/run`, "{not json", 400],
        ["missing code", "POST", `/kernels/${kernel}/run`, {}, 400],
        ["non-string code", "POST", `/kernels/${kernel}/run`, { code: 42 }, 400],
        ["unknown run field", "POST", `/kernels/${kernel}/run`, { code: "1", timeout: 5 }, 400],
        ["JSON that is not an object", "POST", `/kernels/${kernel}/run`, "[1, 2]", 400],
        ["timeoutMs of zero", "POST", `/kernels/${kernel}/run`, { code: "1", timeoutMs: 0 }, 400],
        [
          "timeoutMs over the maximum",
          "POST",
          `/kernels/${kernel}/run`,
          { code: "1", timeoutMs: 99_999_999 },
          400,
        ],
        ["fractional timeoutMs", "POST", `/kernels/${kernel}/run`, { code: "1", timeoutMs: 1.5 }, 400],
        ["code over the size cap", "POST", `/kernels/${kernel}/run`, { code: "x".repeat(300 * 1024) }, 413],
        ["kernelId with a slash", "POST", "/kernels", { kernelId: "a/b" }, 400],
        ["kernelId starting with a dot", "POST", "/kernels", { kernelId: ".hidden" }, 400],
        ["kernelId too long", "POST", "/kernels", { kernelId: "k".repeat(129) }, 400],
        ["unknown start field", "POST", "/kernels", { kernelId: "ok", image: "evil" }, 400],
        ["relative cwd", "POST", "/kernels", { kernelId: "ok", cwd: "relative/dir" }, 400],
        ["reserved env key", "POST", "/kernels", { kernelId: "ok", env: { KERNEL_IMAGE: "evil" } }, 400],
        ["LD_PRELOAD in env", "POST", "/kernels", { kernelId: "ok", env: { LD_PRELOAD: "/x.so" } }, 400],
        ["non-string env value", "POST", "/kernels", { kernelId: "ok", env: { A: 1 } }, 400],
        ["bad kernelId in the path", "GET", "/kernels/bad%20id", undefined, 400],
        ["unknown route", "GET", "/nowhere", undefined, 404],
        ["unknown method", "PATCH", `/kernels/${kernel}`, undefined, 405],
      ];

      for (const [name, method, path, body, status] of badRequests) {
        it(`answers ${status} with a JSON error for ${name}`, async () => {
          const res = await api.request<{ error: { code: string; message: string } }>(method, path, body);

          assert.equal(res.status, status, res.text);
          assert.equal(typeof res.body.error.code, "string");
          assert.ok(res.body.error.message.length > 0);
          assert.doesNotMatch(res.text, /at .*\.ts:\d+|node_modules|Traceback/);
        });
      }

      it("changed nothing: no kernel 'ok' was made and the main kernel still works", async () => {
        assert.equal((await api.get("ok")).status, 404);
        assert.equal(await api.eval(kernel, "6 * 7"), "42");
      });
    });
  });
}
