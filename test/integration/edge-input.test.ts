import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/** Input that is valid JSON and looks plausible, but can't work: a clear 400, and nothing harmed. */
describe("edge input found by fuzzing", { timeout: 120_000 }, () => {
  let server: LocalApi;
  let scratch: string;

  before(async () => {
    server = await startLocalApi();
    scratch = await mkdtemp(join(tmpdir(), "pybox-edge-"));
  });

  after(async () => {
    await server?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  const code = (res: { body: unknown }) => (res.body as { error?: { code: string } }).error?.code;

  it("refuses a cwd that cannot be a directory with 400, starting nothing", async () => {
    const file = join(scratch, "a-file");
    await writeFile(file, "x");
    for (const cwd of [file, join(file, "below"), join(scratch, "a".repeat(300))]) {
      const res = await server.api.start({ kernelId: "edge", cwd });
      assert.equal(res.status, 400, cwd);
      assert.equal(code(res), "INVALID_REQUEST");
      assert.match(JSON.stringify(res.body), /cannot be used as a directory/);
    }
    assert.equal((await server.api.get("edge")).status, 404);
  });

  it("refuses a cwd under /proc, /sys or /dev at once (mkdir there can spin forever)", async () => {
    for (const cwd of ["/proc/x", "/sys/kernel/x", "/dev/shm/../x", "/tmp/../proc/y"]) {
      const res = await server.api.start({ cwd });
      assert.equal(res.status, 400, cwd);
      assert.match(JSON.stringify(res.body), /may not be under \/proc, \/sys or \/dev/);
    }
  });

  it("refuses code with a lone surrogate, which the kernel could never answer, and keeps the kernel", async () => {
    assert.equal((await server.api.start({ kernelId: "uni" })).status, 201);
    const res = await server.api.request("POST", "/kernels/uni/run", '{"code": "x = 1  # \\ud800"}');
    assert.equal(res.status, 400);
    assert.match(JSON.stringify(res.body), /lone UTF-16 surrogate/);
    assert.equal(await server.api.eval("uni", "'still ' + 'here 😀'"), "'still here 😀'");
    const queued = await server.api.request("POST", "/kernels/uni/runs", '{"code": "\\udc00"}');
    assert.equal(queued.status, 400);
  });
});
