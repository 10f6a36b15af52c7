import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isWithin, jailedCommand, type KernelJail } from "../../../lib/backends/local/bwrap.ts";
import { cwdRefusal, kernelUid } from "../../../lib/backends/local/sandbox.ts";
import { DEFAULT_KERNEL_LIMITS } from "../../../lib/config.ts";

const JAIL: KernelJail = {
  runtimeDir: "/srv/state/kernels/k1",
  socketDir: "/tmp/pybox-k-abc",
  workDir: "/data/project",
  stateDir: "/srv/state",
  hidden: ["/root", "/root/.cache"],
  pythonDirs: ["/root/.pyenv/versions/3.11.7", "/srv/venv"],
  uid: 1_600_000_123,
};
const KERNEL = ["/srv/venv/bin/python", "-m", "ipykernel_launcher"];

/** The `(flag, path)` pairs of the mounts, in order, so tests read as the mount table. */
function mounts(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const flag = args[i] ?? "";
    if (["--tmpfs", "--dir", "--proc", "--dev"].includes(flag)) out.push(`${flag} ${args[i + 1]}`);
    if (["--bind", "--ro-bind"].includes(flag)) out.push(`${flag} ${args[i + 2]}`);
  }
  return out;
}

describe("jailedCommand", () => {
  it("mounts in an order where later, narrower mounts win", () => {
    // Act
    const { args } = jailedCommand(
      { bwrap: "bwrap", prlimit: "prlimit" },
      JAIL,
      DEFAULT_KERNEL_LIMITS,
      KERNEL,
    );

    // Assess: hidden home first, the cwd before the interpreter (kept read-only inside it), the state
    // folder hidden before the kernel's own folder is bound back.
    assert.deepEqual(mounts(args), [
      "--ro-bind /",
      "--dev /dev",
      "--proc /proc",
      "--tmpfs /tmp",
      "--tmpfs /dev/shm",
      "--tmpfs /run",
      "--tmpfs /root",
      "--bind /data/project",
      "--dir /root/.pyenv",
      "--dir /root/.pyenv/versions",
      "--ro-bind /root/.pyenv/versions/3.11.7",
      "--ro-bind /srv/venv",
      "--tmpfs /srv/state",
      "--dir /srv/state/kernels",
      "--bind /srv/state/kernels/k1",
      "--bind /tmp/pybox-k-abc",
    ]);
  });

  it("gives the private /tmp its size and sticky world-writable mode", () => {
    const { args } = jailedCommand(
      { bwrap: "bwrap", prlimit: "prlimit" },
      JAIL,
      DEFAULT_KERNEL_LIMITS,
      KERNEL,
    );

    const at = args.indexOf("/tmp");
    assert.deepEqual(args.slice(at - 5, at + 1), [
      "--size",
      String(DEFAULT_KERNEL_LIMITS.tmpBytes),
      "--perms",
      "1777",
      "--tmpfs",
      "/tmp",
    ]);
  });

  it("gives the kernel its own /dev/shm for semaphores, no bigger than its /tmp", () => {
    const small = { ...DEFAULT_KERNEL_LIMITS, tmpBytes: 8 * 1024 ** 2 };
    for (const [limits, size] of [
      [DEFAULT_KERNEL_LIMITS, 64 * 1024 ** 2],
      [small, small.tmpBytes],
    ] as const) {
      const { args } = jailedCommand({ bwrap: "bwrap", prlimit: "prlimit" }, JAIL, limits, KERNEL);

      const at = args.indexOf("/dev/shm");
      assert.deepEqual(args.slice(at - 5, at + 1), [
        "--size",
        String(size),
        "--perms",
        "1777",
        "--tmpfs",
        "/dev/shm",
      ]);
    }
  });

  it("as a normal user: a user namespace without capabilities, then the rlimits, then the kernel", () => {
    const { file, args } = jailedCommand(
      { bwrap: "/usr/bin/bwrap", prlimit: "/usr/bin/prlimit" },
      JAIL,
      DEFAULT_KERNEL_LIMITS,
      KERNEL,
    );

    assert.equal(file, "/usr/bin/bwrap");
    for (const flag of ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"]) {
      assert.ok(args.includes(flag), flag);
    }
    assert.ok(!args.includes("--cap-add"));
    const command = args.slice(args.indexOf("--") + 1);
    assert.deepEqual(command, [
      "/usr/bin/prlimit",
      `--data=${DEFAULT_KERNEL_LIMITS.memoryBytes}`,
      `--nproc=${DEFAULT_KERNEL_LIMITS.processes}`,
      `--fsize=${DEFAULT_KERNEL_LIMITS.fileBytes}`,
      `--cpu=${DEFAULT_KERNEL_LIMITS.cpuSeconds}`,
      "--core=0",
      "--",
      ...KERNEL,
    ]);
  });

  it("as root: setpriv drops to the kernel's own uid, then an unprivileged bwrap makes its user namespace", () => {
    const { args } = jailedCommand(
      { bwrap: "bwrap", prlimit: "prlimit", setpriv: "/usr/bin/setpriv" },
      JAIL,
      DEFAULT_KERNEL_LIMITS,
      KERNEL,
    );

    // The outer, privileged bwrap makes no user namespace (its uid map would keep the kernel root).
    assert.ok(!args.slice(0, args.indexOf("--")).includes("--unshare-user"));
    assert.ok(args.includes("--unshare-net") && args.includes("--unshare-pid"));
    const command = args.slice(args.indexOf("--") + 1);
    assert.deepEqual(command.slice(0, 19), [
      "/usr/bin/setpriv",
      "--reuid=1600000123",
      "--regid=1600000123",
      "--clear-groups",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--no-new-privs",
      "--",
      "bwrap",
      "--unshare-user",
      "--disable-userns",
      "--die-with-parent",
      "--dev-bind",
      "/",
      "/",
      "--chdir",
      JAIL.workDir,
      "--",
      "prlimit",
    ]);
  });

  it("refuses to start a root sandbox without a uid for the kernel", () => {
    const { uid: _, ...withoutUid } = JAIL;

    assert.throws(() =>
      jailedCommand(
        { bwrap: "bwrap", prlimit: "prlimit", setpriv: "setpriv" },
        withoutUid,
        DEFAULT_KERNEL_LIMITS,
        KERNEL,
      ),
    );
  });

  it("binds a working directory inside the runtime folder only once, with it", () => {
    const { args } = jailedCommand(
      { bwrap: "bwrap", prlimit: "prlimit" },
      { ...JAIL, workDir: "/srv/state/kernels/k1/work" },
      DEFAULT_KERNEL_LIMITS,
      KERNEL,
    );

    assert.ok(!mounts(args).includes("--bind /srv/state/kernels/k1/work"));
    assert.equal(args[args.indexOf("--chdir") + 1], "/srv/state/kernels/k1/work");
  });
});

describe("kernelUid", () => {
  it("draws uids far above any account's", () => {
    assert.equal(
      kernelUid(() => 0),
      1_600_000_000,
    );
    assert.ok(kernelUid(() => 0.999999) < 2 ** 31);
  });
});

describe("isWithin", () => {
  it("knows a folder, its descendants, and look-alike siblings apart", () => {
    assert.equal(isWithin("/a/b", "/a/b"), true);
    assert.equal(isWithin("/a/b/c", "/a/b"), true);
    assert.equal(isWithin("/a/bc", "/a/b"), false);
    assert.equal(isWithin("/a", "/a/b"), false);
    assert.equal(isWithin("/a/b", "/"), true);
  });
});

describe("cwdRefusal", () => {
  const guard = {
    stateDir: "/srv/pybox/.pybox",
    home: "/home/dev",
    tmp: "/tmp",
    pythonDirs: ["/srv/pybox/.venv", "/usr/lib/python3.11"],
  };

  it("lends ordinary folders, in the home or in /tmp", () => {
    for (const cwd of ["/home/dev/data", "/tmp/pybox-cwd-1", "/srv/data/project"]) {
      assert.equal(cwdRefusal(cwd, guard), undefined, cwd);
    }
  });

  it("refuses system folders, the state folder, and anything containing what the sandbox hides", () => {
    const refused: Array<[string, RegExp]> = [
      ["/", /contains \/,/],
      ["/etc/app", /system folder \/etc/],
      ["/usr/local/data", /system folder \/usr/],
      ["/srv/pybox/.pybox/kernels/x", /state folder/],
      ["/srv/pybox", /contains \/srv\/pybox\/\.pybox/],
      ["/home", /contains \/home\/dev/],
      ["/tmp", /contains \/tmp/],
      ["/tmp/pybox-k-abc123", /socket folder/],
    ];
    for (const [cwd, reason] of refused) assert.match(cwdRefusal(cwd, guard) ?? "", reason, cwd);
  });

  it("keeps to PYBOX_LOCAL_CWD_ROOTS when the operator sets them", () => {
    const rooted = { ...guard, roots: ["/srv/data"] };

    assert.equal(cwdRefusal("/srv/data/a", rooted), undefined);
    assert.match(cwdRefusal("/home/dev/data", rooted) ?? "", /PYBOX_LOCAL_CWD_ROOTS/);
  });
});
