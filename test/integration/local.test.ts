import assert from "node:assert/strict";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { localKernelPid, processExists } from "../support/kernel-process.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { waitFor } from "../support/local-kernels.ts";
import { describeBackendBehaviour } from "./behaviour.ts";

describeBackendBehaviour("local", async () => {
  const server = await startLocalApi();
  const api = server.api.as("alice");
  return {
    api: server.api,
    stop: () => server.stop(),
    killKernel: async (kernelId) => {
      process.kill(await localKernelPid((code) => api.eval(kernelId, code)), "SIGKILL");
    },
  };
});

describe("local backend", { timeout: 300_000 }, () => {
  describe("kernel environment", () => {
    let server: LocalApi;

    before(async () => {
      server = await startLocalApi({
        AWS_ACCESS_KEY_ID: "AKIAHOSTSECRET",
        AWS_SECRET_ACCESS_KEY: "host-secret-value",
        GITHUB_TOKEN: "ghp_hosttoken",
        PYBOX_KERNEL_ENV: JSON.stringify({ TEAM: "analytics", SHARED: "operator" }),
      });
    });

    after(async () => {
      await server?.stop();
    });

    it("keeps the host's variables out of the kernel", async () => {
      await server.api.start({ kernelId: "env" });

      const names = await server.api.eval("env", "import os, json\njson.dumps(sorted(os.environ))");
      const values = await server.api.eval("env", "'|'.join(os.environ.values())");

      for (const leaked of [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "PYBOX_KERNEL_ENV",
      ]) {
        assert.ok(!names.includes(leaked), `${leaked} leaked into the kernel: ${names}`);
      }
      assert.ok(!values.includes("host-secret-value") && !values.includes("ghp_hosttoken"));
    });

    it("passes operator and caller variables, the operator's winning", async () => {
      const started = await server.api.start({
        kernelId: "env2",
        env: { PROJECT: "sales", SHARED: "caller" },
      });
      assert.equal(started.status, 201, started.text);

      const seen = await server.api.eval(
        "env2",
        "import os\n(os.environ['TEAM'], os.environ['PROJECT'], os.environ['SHARED'])",
      );

      assert.equal(seen, "('analytics', 'sales', 'operator')");
    });

    it("gives every kernel its own random key in a private connection file", async () => {
      await server.api.start({ kernelId: "key-a" });
      await server.api.start({ kernelId: "key-b" });

      const dirs = await readdir(join(server.stateDir, "kernels"));
      const files = dirs.map((dir) => join(server.stateDir, "kernels", dir, "connection.json"));
      const keys = await Promise.all(
        files.map(async (file) => JSON.parse(await readFile(file, "utf8")).key as string),
      );
      const modes = await Promise.all(files.map(async (file) => (await stat(file)).mode & 0o777));

      assert.ok(keys.length >= 2);
      assert.equal(new Set(keys).size, keys.length);
      assert.ok(keys.every((key) => key.length >= 64));
      assert.ok(
        modes.every((mode) => mode === 0o600),
        `modes: ${modes.map((m) => m.toString(8))}`,
      );
    });
  });

  describe("a kernel held by a long run", () => {
    let server: LocalApi;

    before(async () => {
      server = await startLocalApi({ PYBOX_BUSY_WAIT_MS: "300" });
    });

    after(async () => {
      await server?.stop();
    });

    it("answers 409 KERNEL_BUSY with Retry-After once the wait for the lease runs out, without running the code", async () => {
      await server.api.start({ kernelId: "held" });
      await server.api.run("held", "ran = []");
      const long = server.api.run("held", "import time\ntime.sleep(2)");
      await new Promise((resolve) => setTimeout(resolve, 200));

      const busy = await server.api.run("held", "ran.append('second')");
      await long;

      assert.equal(busy.status, 409, busy.text);
      assert.equal((busy.body as unknown as { error: { code: string } }).error.code, "KERNEL_BUSY");
      assert.equal(busy.headers.get("retry-after"), "1");
      assert.equal(await server.api.eval("held", "ran"), "[]");
    });
  });

  describe("the dev server's own lifecycle", () => {
    it("stops its kernels on Ctrl-C", async () => {
      const server = await startLocalApi();
      try {
        await server.api.start({ kernelId: "k" });
        const pid = await localKernelPid((code) => server.api.eval("k", code));
        assert.ok(processExists(pid));

        await server.stop({ signal: "SIGINT", keepState: true });

        assert.ok(await waitFor(() => !processExists(pid), 5_000), "kernel outlived the server");
        assert.match(server.output(), /Stopped 1 kernel/);
      } finally {
        await server.stop();
      }
    });

    it("takes sandboxed kernels down with it when it crashes, and cleans their records up at the next start", async () => {
      const first = await startLocalApi({ PYBOX_LOCAL_SANDBOX: "bwrap" });
      let pids: number[] = [];
      try {
        for (const kernelId of ["one", "two"]) {
          await first.api.start({ kernelId });
          pids.push(await localKernelPid((code) => first.api.eval(kernelId, code)));
        }

        await first.stop({ signal: "SIGKILL", keepState: true });

        assert.ok(
          await waitFor(() => pids.every((pid) => !processExists(pid)), 5_000),
          "a kernel outlived the server",
        );
        const second = await startLocalApi({ PYBOX_LOCAL_SANDBOX: "bwrap" }, first.stateDir);
        try {
          assert.match(second.output(), /0 re-attached, 2 dead ones cleaned up/);
          assert.equal((await second.api.get("one")).status, 404);
        } finally {
          await second.stop();
        }
      } finally {
        for (const pid of pids) if (processExists(pid)) process.kill(pid, "SIGKILL");
        pids = [];
        await first.stop();
      }
    });

    it("re-attaches live unsandboxed kernels and cleans up dead ones after a crash", async () => {
      const first = await startLocalApi({ PYBOX_LOCAL_SANDBOX: "off" });
      let pids: number[] = [];
      try {
        await first.api.start({ kernelId: "survivor" });
        await first.api.run("survivor", "kept = 'yes'");
        await first.api.start({ kernelId: "casualty" });
        pids = [
          await localKernelPid((code) => first.api.eval("survivor", code)),
          await localKernelPid((code) => first.api.eval("casualty", code)),
        ];
        await first.stop({ signal: "SIGKILL", keepState: true });
        const casualty = pids[1];
        if (casualty) process.kill(casualty, "SIGKILL");
        await writeFile(join(first.stateDir, "marker"), "crashed");

        const second = await startLocalApi({ PYBOX_LOCAL_SANDBOX: "off" }, first.stateDir);
        try {
          assert.match(second.output(), /1 re-attached, 1 dead ones cleaned up/);
          assert.match(second.output(), /kernels are NOT isolated/);
          assert.equal(await second.api.eval("survivor", "kept"), "'yes'");
          assert.equal((await second.api.get("casualty")).status, 404);
        } finally {
          await second.stop();
        }
        assert.ok(await waitFor(() => !processExists(pids[0] ?? 0), 5_000));
      } finally {
        for (const pid of pids) if (processExists(pid)) process.kill(pid, "SIGKILL");
        await first.stop();
      }
    });
  });
});
