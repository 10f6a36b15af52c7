import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ensurePythonEnv, TOOLS_ENV } from "../../lib/dev/python-env.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/** The caller every fuzzed request names (the dev server takes the bearer token's text as the caller). */
const CALLER = "schemathesis";

/** The kernel id of the document's examples: the one kernel that lives through the run. */
const KEPT_KERNEL = "demo";

/**
 * Schemathesis hooks. Fuzzed starts would each make a kernel (a Python process; this machine has
 * two cores) and fuzzed `cwd`s would be created anywhere on the disk, so:
 * - a start with a valid `kernelId` starts (or finds) the document's example kernel instead, so
 *   the stateful phase follows its links to a real kernel and at most one such kernel lives;
 * - any other kernel a start made (a fresh UUID for a start without `kernelId`, or another
 *   caller's: the coverage phase also sends requests without the header) is stopped at once;
 * - an absolute `cwd` is moved under a scratch folder (still valid: same shape, a longer path).
 * Values the fuzzer made invalid are left as they are, so negative cases stay negative.
 */
const HOOKS = `
import json, os, re, urllib.request

import schemathesis

BASE = os.environ["PYBOX_FUZZ_BASE_URL"]
CWD_ROOT = os.environ["PYBOX_FUZZ_CWD_ROOT"]
KEPT = ${JSON.stringify(KEPT_KERNEL)}
AUTHORIZATION = ${JSON.stringify(`Bearer ${CALLER}`)}
KERNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _is_start(case):
    return case.operation.method.upper() == "POST" and case.operation.path == "/kernels"


@schemathesis.hook
def before_call(context, case, kwargs):
    if not _is_start(case) or not isinstance(case.body, dict):
        return
    cwd = case.body.get("cwd")
    if isinstance(cwd, str) and cwd.startswith("/"):
        case.body["cwd"] = CWD_ROOT + cwd
    kernel_id = case.body.get("kernelId")
    if isinstance(kernel_id, str) and KERNEL_ID.fullmatch(kernel_id):
        case.body["kernelId"] = KEPT


@schemathesis.hook
def after_call(context, case, response):
    if not _is_start(case) or response.status_code != 201:
        return
    kernel_id = json.loads(response.content)["kernelId"]
    # The coverage phase also sends requests without the header (the dev server's caller "local"):
    # only the fuzz caller's example kernel is kept, and a stop names the caller the start named.
    authorization = response.request.headers.get("Authorization")
    if kernel_id == KEPT and authorization == AUTHORIZATION:
        return
    headers = {"Authorization": authorization} if authorization else {}
    request = urllib.request.Request(f"{BASE}/kernels/{kernel_id}", method="DELETE", headers=headers)
    urllib.request.urlopen(request, timeout=60).read()
`;

/**
 * What the API must hold to, by Schemathesis' checks: no 5xx; every status, content type, header
 * and body as the document says; invalid input refused; methods a path does not serve are 405 with
 * `Allow`; a deleted kernel is gone.
 */
const CHECKS = [
  "not_a_server_error",
  "response_schema_conformance",
  "negative_data_rejection",
  "status_code_conformance",
  "content_type_conformance",
  "response_headers_conformance",
  "unsupported_method",
  "allow_header_conformance",
  "use_after_free",
];

function run(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
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

describe("Schemathesis against the local API", { timeout: 300_000 }, () => {
  let server: LocalApi | undefined;
  let scratch: string | undefined;

  before(async () => {
    await ensurePythonEnv(TOOLS_ENV);
    scratch = await mkdtemp(join(tmpdir(), "pybox-schemathesis-"));
    await mkdir(join(scratch, "cwd"));
    await writeFile(join(scratch, "hooks.py"), HOOKS);
    server = await startLocalApi();
  });

  after(async () => {
    await server?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("finds no server error, no answer off the document and no invalid input accepted", async () => {
    // Arrange
    assert.ok(server && scratch);
    const url = server.api.baseUrl;
    const args = [
      "run",
      `${url}/openapi.json`,
      "--url",
      url,
      "--checks",
      CHECKS.join(","),
      "--phases",
      "examples,coverage,fuzzing,stateful",
      "--max-examples",
      "100",
      "--workers",
      "1",
      "--seed",
      "20261126",
      "--request-timeout",
      "90",
      "--header",
      `Authorization: Bearer ${CALLER}`,
      "--no-color",
    ];

    // Act
    const started = Date.now();
    const { code, output } = await run(join(TOOLS_ENV.dir, "bin", "schemathesis"), args, {
      // Its cwd gets Schemathesis' own example database: the scratch folder, not the repository.
      cwd: scratch,
      env: {
        ...process.env,
        SCHEMATHESIS_HOOKS: join(scratch, "hooks.py"),
        PYBOX_FUZZ_BASE_URL: url,
        PYBOX_FUZZ_CWD_ROOT: join(scratch, "cwd"),
      },
    });

    // Assess
    assert.equal(code, 0, `schemathesis ${args.join(" ")} exited with ${code}:\n${output}`);
    assert.match(output, /No issues found/, output);
    const kernels = await readdir(join(server.stateDir, "kernels")).catch(() => []);
    assert.ok(kernels.length <= 1, `fuzzing left ${kernels.length} kernels running:\n${output}`);
    console.log(`schemathesis passed in ${Math.round((Date.now() - started) / 1000)} s`);
  });
});
