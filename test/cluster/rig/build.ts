import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { access, chmod, cp, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { exists } from "./exists.ts";
import { findPeers, type Peers } from "./peers.ts";

/**
 * The versions the rig builds. kube-apiserver and kube-controller-manager come from the
 * `k8s.io/kubernetes` module with its staging modules pinned to the matching v0.x; etcd from
 * `go.etcd.io/etcd/server/v3`. Changing one rebuilds only what depends on it.
 */
export const RIG_VERSIONS = {
  kubernetes: "v1.37.2",
  staging: "v0.37.2",
  etcd: "v3.7.3",
} as const;

/** The binaries the rig runs, by name. */
export interface RigBinaries {
  etcd: string;
  kubeApiserver: string;
  kubeControllerManager: string;
  kernelController: string;
}

/** The rig's cache: built binaries, keyed by version, outside the checkout so a new clone reuses them. */
export function rigCacheDir(): string {
  const base = process.env.PYBOX_RIG_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"));
  return process.env.PYBOX_RIG_CACHE ? base : join(base, "pybox-serverless", "cluster-rig");
}

/** Where the Go toolchain is: on the PATH, else where this machine kind installs it. */
async function goCommand(): Promise<string> {
  for (const dir of (process.env.PATH ?? "").split(":").concat("/usr/local/go/bin")) {
    const candidate = join(dir, "go");
    try {
      await access(candidate);
      return candidate;
    } catch {}
  }
  throw new Error(
    "The cluster rig builds kube-apiserver, etcd and the kernel controller from Go modules, and no `go` was found (PATH, /usr/local/go/bin). Install Go ≥ 1.26.",
  );
}

/** Runs `go` in `cwd`, failing with the end of its output. */
async function go(args: string[], cwd: string, log: (line: string) => void): Promise<string> {
  const command = await goCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod -buildvcs=false", CGO_ENABLED: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve(output);
      else {
        log(output);
        reject(new Error(`go ${args.join(" ")} failed in ${cwd} (exit ${code}):\n${output.slice(-4000)}`));
      }
    });
  });
}

/** Builds `target` once: the work goes to a temporary name and is renamed in, so a crash never leaves half a binary. */
async function once(target: string, log: (line: string) => void, build: (out: string) => Promise<void>) {
  if (await exists(target)) return;
  const started = Date.now();
  log(`building ${target} (once; later runs reuse it)`);
  const partial = `${target}.partial-${process.pid}`;
  await build(partial);
  await rename(partial, target);
  log(`built ${target} in ${Math.round((Date.now() - started) / 1000)} s`);
}

/** The staging modules `k8s.io/kubernetes` replaces with its own folders, which a consumer must pin. */
async function stagingModules(moduleDir: string, log: (line: string) => void): Promise<string[]> {
  const json = await go(
    ["mod", "download", "-json", `k8s.io/kubernetes@${RIG_VERSIONS.kubernetes}`],
    moduleDir,
    log,
  );
  const { GoMod } = JSON.parse(json) as { GoMod: string };
  const goMod = await readFile(GoMod, "utf8");
  return [...goMod.matchAll(/^\s*(k8s\.io\/[\w.-]+)\s+=>\s+\.\/staging\//gm)].map((match) => match[1] ?? "");
}

async function buildKubernetes(
  cache: string,
  bin: Omit<RigBinaries, "etcd" | "kernelController">,
  log: (line: string) => void,
) {
  const moduleDir = join(cache, "build", `kubernetes-${RIG_VERSIONS.kubernetes}`);
  await mkdir(moduleDir, { recursive: true });
  await writeFile(join(moduleDir, "go.mod"), "module pybox.invalid/rig/kubernetes\n\ngo 1.26\n");
  const staging = await stagingModules(moduleDir, log);
  const replaces = staging.map((name) => `\t${name} => ${name} ${RIG_VERSIONS.staging}`).join("\n");
  await writeFile(
    join(moduleDir, "go.mod"),
    `module pybox.invalid/rig/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes ${RIG_VERSIONS.kubernetes}\n\nreplace (\n${replaces}\n)\n`,
  );
  const targets = [
    ["k8s.io/kubernetes/cmd/kube-apiserver", bin.kubeApiserver],
    ["k8s.io/kubernetes/cmd/kube-controller-manager", bin.kubeControllerManager],
  ] as const;
  await go(["get", ...targets.map(([command]) => `${command}@${RIG_VERSIONS.kubernetes}`)], moduleDir, log);
  const [major, minor] = RIG_VERSIONS.kubernetes.slice(1).split(".");
  const version = "k8s.io/component-base/version";
  const ldflags = `-s -w -X ${version}.gitVersion=${RIG_VERSIONS.kubernetes} -X ${version}.gitMajor=${major} -X ${version}.gitMinor=${minor}`;
  for (const [command, target] of targets) {
    await once(target, log, async (out) => {
      await go(["build", "-trimpath", "-ldflags", ldflags, "-o", out, command], moduleDir, log);
    });
  }
}

async function buildEtcd(cache: string, target: string, log: (line: string) => void) {
  const moduleDir = join(cache, "build", `etcd-${RIG_VERSIONS.etcd}`);
  await mkdir(moduleDir, { recursive: true });
  await writeFile(
    join(moduleDir, "go.mod"),
    `module pybox.invalid/rig/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 ${RIG_VERSIONS.etcd}\n`,
  );
  // etcd's own main is a one-line call of etcdmain; its root module cannot be built as a dependency.
  await writeFile(
    join(moduleDir, "main.go"),
    'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n',
  );
  await go(["mod", "tidy"], moduleDir, log);
  await go(["build", "-trimpath", "-ldflags", "-s -w", "-o", target, "."], moduleDir, log);
}

/** Copies of read-only peers keep their modes; Go must be able to update go.sum in the copy. */
async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) await makeWritable(full);
    else await chmod(full, 0o644);
  }
}

/** A key of the controller's sources, so a changed peer is rebuilt and an unchanged one is not. */
async function sourceKey(dir: string): Promise<string> {
  const hash = createHash("sha256");
  const walk = async (path: string): Promise<void> => {
    const entries = (await readdir(path, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    );
    for (const entry of entries) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (/\.(go|mod|sum)$/.test(entry.name))
        hash.update(full.slice(dir.length)).update(await readFile(full));
    }
  };
  await walk(dir);
  return hash.digest("hex").slice(0, 16);
}

/**
 * The rig's binaries, built on first use into {@link rigCacheDir} and reused afterwards: a cold
 * build takes minutes (kube-apiserver alone ~8 on two cores), a warm start none.
 */
export async function buildRig(
  options: { peers?: Peers; log?: (line: string) => void } = {},
): Promise<RigBinaries> {
  const log = options.log ?? ((line: string) => console.error(`[rig] ${line}`));
  const peers = options.peers ?? (await findPeers());
  const cache = rigCacheDir();
  const binDir = join(cache, "bin");
  await mkdir(binDir, { recursive: true });
  const controllerKey = await sourceKey(peers.controller);
  const bin: RigBinaries = {
    etcd: join(binDir, `etcd-${RIG_VERSIONS.etcd}`),
    kubeApiserver: join(binDir, `kube-apiserver-${RIG_VERSIONS.kubernetes}`),
    kubeControllerManager: join(binDir, `kube-controller-manager-${RIG_VERSIONS.kubernetes}`),
    kernelController: join(binDir, `jupyter-kernel-controller-${controllerKey}`),
  };
  await once(bin.etcd, log, (out) => buildEtcd(cache, out, log));
  if (!(await exists(bin.kubeApiserver)) || !(await exists(bin.kubeControllerManager))) {
    await buildKubernetes(cache, bin, log);
  }
  await once(bin.kernelController, log, async (out) => {
    // The peers are read-only; Go may want to write go.sum, so it builds a copy.
    const source = join(cache, "build", `jupyter-kernel-controller-${controllerKey}`);
    await rm(source, { recursive: true, force: true });
    await cp(peers.controller, source, { recursive: true });
    await makeWritable(source);
    await go(["build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd"], source, log);
  });
  return bin;
}
