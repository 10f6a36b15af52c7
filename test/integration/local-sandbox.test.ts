import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PROJECT_ROOT } from "../../lib/config.ts";
import type { ApiClient } from "../support/api.ts";
import { localKernelPid, processExists } from "../support/kernel-process.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { waitFor } from "../support/local-kernels.ts";

/** Small limits, so the bombs below hit them quickly. */
const LIMITS = {
  PYBOX_LOCAL_MEMORY_BYTES: String(512 * 1024 ** 2),
  PYBOX_LOCAL_MAX_PROCESSES: "64",
  PYBOX_LOCAL_MAX_FILE_BYTES: String(1024 ** 2),
  PYBOX_LOCAL_CPU_SECONDS: "600",
  PYBOX_LOCAL_TMP_BYTES: String(8 * 1024 ** 2),
};

/** Everything a Python expression printed, or its error, from inside the kernel. */
async function inKernel(api: ApiClient, kernelId: string, code: string, timeoutMs?: number): Promise<string> {
  const res = await api.run(kernelId, code, timeoutMs);
  assert.equal(res.status, 200, res.text);
  const text = res.body.data.map((entry) => String(entry["text/plain"] ?? "")).join("");
  return res.body.error ? `${text}${res.body.error.ename}: ${res.body.error.evalue}` : text;
}

/** The pid namespace a sandboxed kernel runs in, found from bwrap's pid on the host. */
async function pidNamespaceOf(bwrapPid: number): Promise<string> {
  const children = (await readFile(`/proc/${bwrapPid}/task/${bwrapPid}/children`, "utf8")).trim().split(" ");
  return readlink(`/proc/${children[0]}/ns/pid`);
}

/** Host processes in a pid namespace. */
async function processesIn(namespace: string): Promise<number> {
  let count = 0;
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    if ((await readlink(`/proc/${name}/ns/pid`).catch(() => "")) === namespace) count++;
  }
  return count;
}

describe("sandboxed local kernels (bubblewrap)", { timeout: 300_000 }, () => {
  let server: LocalApi;
  let api: ApiClient;
  let home: string;
  let listener: Server;
  let connections = 0;
  let port = 0;

  before(async () => {
    // The server's own home holds credentials, as a developer's does.
    home = await mkdtemp(join(tmpdir(), "pybox-home-"));
    await mkdir(join(home, ".aws"));
    await writeFile(join(home, ".aws", "credentials"), "[default]\naws_secret_access_key = host-secret\n");
    listener = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    port = (listener.address() as { port: number }).port;
    server = await startLocalApi({
      PYBOX_LOCAL_SANDBOX: "bwrap",
      HOME: home,
      PYBOX_HOST_MARKER: "host-only",
      ...LIMITS,
    });
    api = server.api.as("mallory");
    for (const kernelId of ["jailed", "neighbour"]) {
      assert.equal((await api.start({ kernelId })).status, 201);
    }
  });

  after(async () => {
    await server?.stop();
    await new Promise((resolve) => listener?.close(resolve));
    await rm(home, { recursive: true, force: true });
  });

  it("says at start that kernels are confined", () => {
    assert.match(server.output(), /Kernels run in bubblewrap/);
    assert.doesNotMatch(server.output(), /NOT isolated/);
  });

  it("cannot open a connection to the host's loopback or to the internet", async () => {
    const code = [
      "import os, socket",
      "for address in [('127.0.0.1', PORT), ('1.1.1.1', 443)]:",
      "    try:",
      "        socket.create_connection(address, timeout=3)",
      "        print('connected', address)",
      "    except OSError as error:",
      "        print('refused', error.errno)",
      "print(sorted(name for _, name in socket.if_nameindex()))",
      "print('run:', os.listdir('/run'))",
    ].join("\n");

    const seen = await inKernel(api, "jailed", code.replace("PORT", String(port)));

    assert.doesNotMatch(seen, /connected/);
    assert.match(seen, /\['lo'\]/);
    assert.match(seen, /run: \[\]/, "host sockets under /run are hidden");
    assert.equal(connections, 0);
  });

  it("writes only in its working directory and its private /tmp", async () => {
    const outside = [
      join(PROJECT_ROOT, "escaped.txt"),
      join(server.stateDir, "escaped.txt"),
      "/etc/escaped.txt",
    ];
    const code = [
      "import os",
      `for path in ${JSON.stringify(outside)}:`,
      "    try:",
      "        open(path, 'w').write('x')",
      "        print('wrote', path)",
      "    except OSError as error:",
      "        print('refused', error.errno)",
      "open('inside.txt', 'w').write('kept')",
      "open('/tmp/scratch.txt', 'w').write('private')",
      "print(os.getcwd())",
    ].join("\n");

    const seen = await inKernel(api, "jailed", code);

    assert.doesNotMatch(seen, /wrote/);
    for (const path of outside) await assert.rejects(readFile(path), { code: "ENOENT" });
    const cwd = seen.trim().split("\n").at(-1) ?? "";
    assert.equal(await readFile(join(cwd, "inside.txt"), "utf8"), "kept");
    await assert.rejects(readFile("/tmp/scratch.txt"), { code: "ENOENT" });
  });

  it("has a /dev/shm of its own, so multiprocessing's locks and pools work", async () => {
    const hostShm = `/dev/shm/pybox-host-${process.pid}`;
    await writeFile(hostShm, "host");
    const code = [
      "import multiprocessing, os",
      "lock = multiprocessing.Lock()",
      "with multiprocessing.Pool(2) as pool:",
      "    print(sum(pool.map(abs, [-1, -2, -3])), os.listdir('/dev/shm'))",
    ].join("\n");

    const seen = await inKernel(api, "jailed", code).finally(() => rm(hostShm, { force: true }));

    assert.match(seen.trim(), /^6 \[/, seen);
    assert.doesNotMatch(seen, /pybox-host-/, "the host's shared memory is not the kernel's");
  });

  it("sees none of the host's processes, variables, credentials or other kernels' keys", async () => {
    const neighbourDir = dirname(
      (await inKernel(api, "neighbour", "import os\nprint(os.environ['IPYTHONDIR'])")).trim(),
    );
    const code = [
      "import os",
      "cmdlines = [open(f'/proc/{p}/cmdline', 'rb').read() for p in os.listdir('/proc') if p.isdigit()]",
      "print(len(cmdlines), any(b'node' in c for c in cmdlines))",
      "print('PYBOX_HOST_MARKER' in os.environ, 'AWS_SECRET_ACCESS_KEY' in os.environ)",
      `for path in ['${join(home, ".aws", "credentials")}', '${join(neighbourDir, "connection.json")}', '${join(server.stateDir, "refs")}']:`,
      "    print(os.path.exists(path))",
    ].join("\n");

    const seen = (await inKernel(api, "jailed", code)).trim().split("\n");

    const [count, sawNode] = (seen[0] ?? "").split(" ");
    assert.ok(Number(count) < 10, `the kernel saw ${count} processes`);
    assert.equal(sawNode, "False");
    assert.deepEqual(seen.slice(1), ["False False", "False", "False", "False"]);
  });

  it("runs under the configured limits", async () => {
    const code = [
      "import resource",
      "for name in ['RLIMIT_DATA', 'RLIMIT_NPROC', 'RLIMIT_FSIZE', 'RLIMIT_CPU']:",
      "    print(resource.getrlimit(getattr(resource, name))[0])",
      "try:",
      "    open('big.bin', 'wb').write(b'x' * (2 * 1024 ** 2))",
      "except OSError as error:",
      "    print('too big', error.errno)",
    ].join("\n");

    const seen = (await inKernel(api, "jailed", code)).trim().split("\n");

    assert.deepEqual(seen, [
      LIMITS.PYBOX_LOCAL_MEMORY_BYTES,
      LIMITS.PYBOX_LOCAL_MAX_PROCESSES,
      LIMITS.PYBOX_LOCAL_MAX_FILE_BYTES,
      LIMITS.PYBOX_LOCAL_CPU_SECONDS,
      "too big 27",
    ]);
  });

  it("refuses a cwd that would open up the host, and makes nothing for it", async () => {
    const link = join(home, "link-to-etc");
    await symlink("/etc", link);
    const refused = [
      "/etc/pybox-planted",
      dirname(home),
      tmpdir(),
      join(server.stateDir, "kernels", "mine"),
      join(link, "pybox-planted"),
    ];

    for (const cwd of refused) {
      const res = await api.start({ kernelId: "wanderer", cwd });
      assert.equal(res.status, 400, `${cwd}: ${res.text}`);
    }

    await assert.rejects(readFile("/etc/pybox-planted"), { code: "ENOENT" });
    assert.equal((await api.get("wanderer")).status, 404);
  });

  it("lends an existing cwd for the kernel's life and gives it back as it was", async () => {
    const cwd = await mkdtemp(join(tmpdir(), "pybox-lent-"));
    await writeFile(join(cwd, "helper_module.py"), "ANSWER = 42\n");
    await writeFile(join(cwd, "ipykernel_launcher.py"), "open('hijacked', 'w').write('yes')\n");
    const before = await stat(cwd);
    try {
      assert.equal((await api.start({ kernelId: "lent", cwd })).status, 201);

      const seen = await inKernel(
        api,
        "lent",
        "import helper_module\nopen('made.txt', 'w').write('ok')\nprint(helper_module.ANSWER)",
      );

      assert.equal(seen, "42\n", "the cwd's own modules import, as in Jupyter");
      assert.equal(await readFile(join(cwd, "made.txt"), "utf8"), "ok");
      await assert.rejects(readFile(join(cwd, "hijacked")), { code: "ENOENT" }, "a planted launcher ran");
      assert.equal((await api.stop("lent")).status, 204);
      const after = await stat(cwd);
      assert.deepEqual([after.uid, after.gid, after.mode], [before.uid, before.gid, before.mode]);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });

  it("cannot make user namespaces of its own", async () => {
    const code = "import subprocess\nprint(subprocess.run(['unshare', '-U', 'true']).returncode)";

    const seen = await inKernel(api, "jailed", code);

    assert.notEqual(seen.trim(), "0");
  });

  it("contains a memory bomb: MemoryError, and the kernel and its neighbour keep working", async () => {
    await inKernel(api, "jailed", "survivor = 'still here'");
    const code = "hoard = []\nwhile True:\n    hoard.append(bytearray(64 * 1024 ** 2))";

    const seen = await inKernel(api, "jailed", code, 20_000);

    assert.match(seen, /MemoryError/);
    assert.equal(await inKernel(api, "jailed", "del hoard\nprint(survivor)"), "still here\n");
    assert.equal(await inKernel(api, "neighbour", "print(6 * 7)"), "42\n");
  });

  it("contains a fork bomb within its process limit while its neighbour keeps working, and stop ends it all", async () => {
    assert.equal((await api.start({ kernelId: "bomb" })).status, 201);
    const pid = await localKernelPid((code) => api.eval("bomb", code));
    const namespace = await pidNamespaceOf(pid);
    const bomb =
      "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)";

    const running = api.run("bomb", bomb, 8_000);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const during = await processesIn(namespace);
    const neighbour = await inKernel(api, "neighbour", "print(sum(range(10)))");
    await running;

    assert.ok(during > 10, `the bomb made only ${during} processes`);
    assert.ok(
      during <= Number(LIMITS.PYBOX_LOCAL_MAX_PROCESSES) + 2,
      `${during} processes escaped the limit`,
    );
    assert.equal(neighbour, "45\n");
    assert.equal((await api.stop("bomb")).status, 204);
    assert.ok(
      await waitFor(async () => (await processesIn(namespace)) === 0, 5_000),
      "bomb processes outlived stop",
    );
    assert.equal(processExists(pid), false);
  });
});
