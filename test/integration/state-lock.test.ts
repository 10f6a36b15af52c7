import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { startLocalApi } from "../support/local-api.ts";

/** Unsandboxed: these servers run no kernel, and the lock comes before the sandbox is looked at. */
const ENV = { PYBOX_LOCAL_SANDBOX: "off" };

describe("npm start's state folder", { timeout: 300_000 }, () => {
  it("is refused to a second server while the first runs: a message naming its PID, no stack trace", async () => {
    // Prepare
    const first = await startLocalApi(ENV);
    try {
      // Act
      const second = startLocalApi(ENV, first.stateDir);

      // Assess
      await assert.rejects(second, (error: Error) => {
        assert.match(error.message, /^server exited with 1:/);
        assert.match(
          error.message,
          new RegExp(`the state directory ${first.stateDir} is in use by process ${first.pid} \\(another`),
        );
        assert.match(error.message, /PYBOX_STATE_DIR=/);
        assert.doesNotMatch(error.message, /\n\s+at |Database is closed/);
        return true;
      });
      assert.equal((await first.api.get("nothing")).status, 404, "the first server still serves");
      assert.equal(await readFile(join(first.stateDir, "server.pid"), "utf8"), `${first.pid}\n`);
    } finally {
      await first.stop();
    }
  });

  it("is taken over from a server that was killed, and freed by one that stopped", async () => {
    // Prepare
    const killed = await startLocalApi(ENV);
    await killed.stop({ signal: "SIGKILL", keepState: true });

    // Act
    const second = await startLocalApi(ENV, killed.stateDir);
    const held = await readFile(join(killed.stateDir, "server.pid"), "utf8");
    await second.stop({ keepState: true });

    // Assess
    try {
      assert.equal(held, `${second.pid}\n`);
      await assert.rejects(readFile(join(killed.stateDir, "server.pid")), { code: "ENOENT" });
    } finally {
      await killed.stop();
    }
  });

  it("stops a second server, on a folder of its own, whose port is taken: it names the port, no stack trace", async () => {
    // Prepare
    const first = await startLocalApi(ENV);
    const port = new URL(first.api.baseUrl).port;
    try {
      // Act
      const second = startLocalApi({ ...ENV, PORT: port });

      // Assess
      await assert.rejects(second, (error: Error) => {
        assert.match(error.message, /^server exited with 1:/);
        assert.match(error.message, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use .*PORT=<port>`));
        assert.doesNotMatch(error.message, /\n\s+at |EADDRINUSE/);
        return true;
      });
      assert.equal((await first.api.get("nothing")).status, 404, "the first server still serves");
    } finally {
      await first.stop();
    }
  });
});
