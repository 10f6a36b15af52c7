import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { KERNEL_PROFILES } from "../../lib/config.ts";
import type { ApiClient } from "../support/api.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/**
 * Kernel profiles on the local backend, through the HTTP API as `npm start` serves it: the
 * `tablegpt` preset (tablegpt-agent's own profile and packages) and an operator's profile folder.
 * What tablegpt-agent's generated code does with the preset is the Python acceptance suite's.
 */

const TABLEGPT_PROFILE = join(KERNEL_PROFILES.tablegpt.venv, KERNEL_PROFILES.tablegpt.profile);

/** What `code` printed, asserting the run went well. */
async function printed(api: ApiClient, kernelId: string, code: string): Promise<string> {
  const res = await api.run(kernelId, code);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.error, null, res.text);
  return res.body.data.map((entry) => entry["text/plain"] ?? "").join("");
}

describe("kernel profiles on the local backend", { timeout: 300_000 }, () => {
  describe("PYBOX_KERNEL_PROFILE=tablegpt", () => {
    let server: LocalApi;
    let api: ApiClient;

    before(async () => {
      server = await startLocalApi({ PYBOX_KERNEL_PROFILE: "tablegpt" });
      api = server.api.as("analyst");
      assert.equal((await api.start({ kernelId: "t" })).status, 201);
    });

    after(async () => {
      await server?.stop();
    });

    it("starts kernels with tablegpt's start-up: read_df, its pandas options, a CJK font", async () => {
      const out = await printed(
        api,
        "t",
        "import pandas as pd, matplotlib\nprint(callable(read_df), pd.get_option('display.width'), matplotlib.rcParams['font.family'])",
      );

      assert.match(out, /^True 2048 \['Noto Serif CJK SC'\]/);
    });

    it("runs them on the preset's own environment, with tablegpt-agent's kernel packages", async () => {
      const out = await printed(
        api,
        "t",
        "import sys, pandas, seaborn, sklearn, statsmodels, openpyxl\nprint(sys.prefix, pandas.__version__)",
      );

      assert.equal(out.split(" ")[0], KERNEL_PROFILES.tablegpt.venv);
      assert.match(out.split(" ")[1] ?? "", /^2\./, "tablegpt-agent needs pandas<3");
    });

    it("gives each kernel its own copy, so no kernel can change what later kernels run at start", async () => {
      const tamper = await api.run(
        "t",
        [
          "import IPython, pathlib",
          "own = pathlib.Path(IPython.get_ipython().profile_dir.location) / 'startup' / '00-evil.py'",
          "try:",
          "    own.write_text('EVIL = 1')",
          "except OSError as error:",
          "    print(type(error).__name__)",
          `shared = pathlib.Path(${JSON.stringify(TABLEGPT_PROFILE)}) / 'startup' / '00-evil.py'`,
          "try:",
          "    shared.write_text('EVIL = 1')",
          "except OSError as error:",
          "    print(type(error).__name__)",
        ].join("\n"),
      );
      assert.equal(tamper.status, 200, tamper.text);
      assert.equal((await api.start({ kernelId: "next" })).status, 201);

      const out = await printed(api, "next", "print('EVIL' in dir())");

      assert.equal(out.trim(), "False");
      assert.ok(!(await readdir(join(TABLEGPT_PROFILE, "startup"))).includes("00-evil.py"));
    });
  });

  describe("PYBOX_KERNEL_PROFILE_DIR", () => {
    let server: LocalApi;
    let profile: string;

    before(async () => {
      profile = await mkdtemp(join(tmpdir(), "pybox-profile-"));
      await mkdir(join(profile, "startup"));
      await writeFile(join(profile, "startup", "00-team.py"), "TEAM_HELPER = 'ready'\n");
      server = await startLocalApi({ PYBOX_KERNEL_PROFILE_DIR: profile });
    });

    after(async () => {
      await server?.stop();
      await rm(profile, { recursive: true, force: true });
    });

    it("starts every kernel with the operator's profile, on the default environment", async () => {
      const api = server.api.as("team");
      assert.equal((await api.start({ kernelId: "p" })).status, 201);

      const out = await printed(api, "p", "import sys\nprint(TEAM_HELPER, sys.prefix.endswith('.venv'))");

      assert.equal(out.trim(), "ready True");
    });

    it("answers a start with a clear 500 when the profile folder has gone, and keeps no kernel", async () => {
      await rm(profile, { recursive: true, force: true });
      const api = server.api.as("later");

      const res = await api.start({ kernelId: "q" });

      assert.equal(res.status, 500, res.text);
      assert.doesNotMatch(res.text, /pybox-profile-|at .*\.ts:\d+/, "no host path or stack in the answer");
      assert.equal((await api.get("q")).status, 404);
      assert.match(server.output(), /PYBOX_KERNEL_PROFILE_DIR/, "the operator's log says what is wrong");
    });
  });
});
