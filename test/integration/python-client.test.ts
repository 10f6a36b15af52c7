import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CLIENT_ENV } from "../../lib/dev/python-env.ts";
import { type RunningGateway, startGateway } from "../support/gateway.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/**
 * The acceptance of the Python client: tablegpt-agent 0.2.27 from PyPI, its own `IPythonTool`,
 * driving `pybox_serverless` against the API served as `npm start` serves it, once with local
 * kernels and once on a real Enterprise Gateway, both with tablegpt's kernel profile. The suite
 * itself is pytest (`clients/python/acceptance`); this file serves the API and reads its verdict.
 */

const CLIENT_DIR = join(import.meta.dirname, "..", "..", "clients", "python");

/** Runs pytest from the client venv; resolves with its exit code and everything it printed. */
function pytest(
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(CLIENT_ENV.dir, "bin", "pytest"), [...args], {
      cwd: CLIENT_DIR,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

/** Asserts the whole acceptance suite passed, showing pytest's report when it did not. */
async function acceptance(baseUrl: string): Promise<void> {
  const { code, output } = await pytest(["acceptance", "-q", "-p", "no:cacheprovider", "-rA"], {
    PYBOX_URL: baseUrl,
  });
  assert.equal(code, 0, output);
  assert.match(output, /\b19 passed\b/, output);
}

describe("the Python client under tablegpt-agent's own IPythonTool", () => {
  describe("against local kernels (npm start, PYBOX_KERNEL_PROFILE=tablegpt)", () => {
    let server: LocalApi;
    before(async () => {
      server = await startLocalApi({ PYBOX_KERNEL_PROFILE: "tablegpt" });
    });
    after(async () => {
      await server?.stop();
    });

    it("passes the acceptance suite with the sync and async managers", async () => {
      await acceptance(server.api.baseUrl);
    });
  });

  describe("against a real Enterprise Gateway with the tablegpt kernelspec", () => {
    let gateway: RunningGateway;
    let server: LocalApi;
    before(async () => {
      gateway = await startGateway("enterprise", [], { kernelSpec: "tablegpt" });
      server = await startLocalApi({
        PYBOX_BACKEND: "gateway",
        PYBOX_GATEWAY_URL: gateway.url,
        PYBOX_GATEWAY_TOKEN: gateway.token,
        PYBOX_GATEWAY_KERNEL_NAME: "python3-tablegpt",
      });
    });
    after(async () => {
      await server?.stop();
      await gateway?.stop();
    });

    it("passes the acceptance suite with the sync and async managers", async () => {
      await acceptance(server.api.baseUrl);
    });
  });
});
