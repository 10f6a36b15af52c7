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


def _is_files(case):
    return case.operation.path.startswith("/kernels/{kernelId}/files")


@schemathesis.hook
def before_call(context, case, kwargs):
    # File routes with a valid kernel id reach the example kernel, so fuzzed paths, bodies and
    # ranges meet a real kernel's files rather than a 404 for a kernel that does not exist.
    if _is_files(case):
        kernel_id = (case.path_parameters or {}).get("kernelId")
        if isinstance(kernel_id, str) and KERNEL_ID.fullmatch(kernel_id):
            case.path_parameters["kernelId"] = KEPT
        return
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

/** The file routes' operations, as the document must declare them. */
const FILE_OPERATIONS = [
  "PUT /kernels/{kernelId}/files/{path}",
  "GET /kernels/{kernelId}/files/{path}",
  "DELETE /kernels/{kernelId}/files/{path}",
  "GET /kernels/{kernelId}/files",
];

/** An OpenAPI document, as far as these tests read it. */
interface OpenApiDocument {
  paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: unknown }> } }>>;
}

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

describe("Schemathesis against the local API", { timeout: 600_000 }, () => {
  let server: LocalApi | undefined;
  let scratch: string | undefined;

  before(async () => {
    await ensurePythonEnv(TOOLS_ENV);
    scratch = await mkdtemp(join(tmpdir(), "pybox-schemathesis-"));
    await mkdir(join(scratch, "cwd"));
    await writeFile(join(scratch, "hooks.py"), HOOKS);
    server = await startLocalApi();
    // The file routes are fuzzed against this kernel (see the hooks); starts find it as well.
    const kept = await server.api.as(CALLER).start({ kernelId: KEPT_KERNEL });
    assert.ok(kept.status === 201 || kept.status === 200, kept.text);
  });

  /** Schemathesis' command line for the document at the server, with `extra` arguments. */
  function schemathesisArgs(url: string, extra: string[]): string[] {
    return [
      "run",
      `${url}/openapi.json`,
      "--url",
      url,
      "--checks",
      CHECKS.join(","),
      "--workers",
      "1",
      "--seed",
      "20261126",
      "--request-timeout",
      "90",
      "--header",
      `Authorization: Bearer ${CALLER}`,
      "--no-color",
      ...extra,
    ];
  }

  function runSchemathesis(args: string[]) {
    assert.ok(server && scratch);
    return run(join(TOOLS_ENV.dir, "bin", "schemathesis"), args, {
      // Its cwd gets Schemathesis' own example database: the scratch folder, not the repository.
      cwd: scratch,
      env: {
        ...process.env,
        SCHEMATHESIS_HOOKS: join(scratch, "hooks.py"),
        PYBOX_FUZZ_BASE_URL: server.api.baseUrl,
        PYBOX_FUZZ_CWD_ROOT: join(scratch, "cwd"),
      },
    });
  }

  after(async () => {
    await server?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("finds no server error, no answer off the document and no invalid input accepted", async () => {
    // Arrange
    assert.ok(server);
    const args = schemathesisArgs(server.api.baseUrl, [
      "--phases",
      "examples,coverage,fuzzing,stateful",
      "--max-examples",
      "100",
    ]);

    // Act
    const started = Date.now();
    const { code, output } = await runSchemathesis(args);

    // Assess
    assert.equal(code, 0, `schemathesis ${args.join(" ")} exited with ${code}:\n${output}`);
    assert.match(output, /No issues found/, output);
    const kernels = await readdir(join(server.stateDir, "kernels")).catch(() => []);
    assert.ok(kernels.length <= 1, `fuzzing left ${kernels.length} kernels running:\n${output}`);
    console.log(`schemathesis passed in ${Math.round((Date.now() - started) / 1000)} s`);
  });

  it("is given the file routes, with binary bodies in and out", async () => {
    // Arrange
    assert.ok(server);

    // Act
    const res = await fetch(`${server.api.baseUrl}/openapi.json`);
    const document = (await res.json()) as OpenApiDocument;

    // Assess
    const declared = Object.entries(document.paths).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
    );
    for (const operation of FILE_OPERATIONS)
      assert.ok(declared.includes(operation), `${operation} in ${declared}`);
    const put = document.paths["/kernels/{kernelId}/files/{path}"]?.put;
    assert.ok(put?.requestBody?.content?.["application/octet-stream"], JSON.stringify(put?.requestBody));
  });

  it("fuzzes the file routes against a real kernel with no server error and nothing written outside it", async () => {
    // Arrange
    assert.ok(server);
    const api = server.api.as(CALLER);
    // The stateful phase of the first run may have followed a link to stop the example kernel.
    const kept = await api.start({ kernelId: KEPT_KERNEL });
    assert.ok(kept.status === 201 || kept.status === 200, kept.text);
    const parentOfRoot = "sorted(os.listdir(os.path.dirname(os.getcwd())))";
    const before = await api.eval(KEPT_KERNEL, `import os\n${parentOfRoot}`);
    const args = schemathesisArgs(server.api.baseUrl, [
      "--include-path-regex",
      "/files",
      "--phases",
      "examples,coverage,fuzzing",
      "--max-examples",
      "150",
    ]);

    // Act
    const started = Date.now();
    const { code, output } = await runSchemathesis(args);

    // Assess
    assert.equal(code, 0, `schemathesis ${args.join(" ")} exited with ${code}:\n${output}`);
    assert.match(output, /No issues found/, output);
    assert.equal(
      await api.eval(KEPT_KERNEL, `import os\n${parentOfRoot}`),
      before,
      "nothing appeared beside the working directory",
    );
    assert.equal(await api.eval(KEPT_KERNEL, "6 * 7"), "42", "the kernel survived the fuzzing");
    console.log(`schemathesis (file routes) passed in ${Math.round((Date.now() - started) / 1000)} s`);
  });
});
