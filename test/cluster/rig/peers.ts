import { spawn } from "node:child_process";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { rigCacheDir } from "./build.ts";
import { exists } from "./exists.ts";

/** Where each real peer's source is. */
export interface Peers {
  /** The checkout of jupyter-kernel-controller (Go). */
  controller: string;
  /** kernel-monitor (Python): `main.py` and `requirements.txt`. */
  monitor: string;
  /** Enterprise Gateway's `etc/kernel-launchers` folder: `bootstrap/bootstrap-kernel.sh`, `python/scripts/launch_ipykernel.py`. */
  launchers: string;
}

const CHECKOUT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The three folders, as `../shared/peers/README.md` lays them out. */
const FOLDERS = {
  controller: "jupyter-kernel-controller",
  monitor: "kernel-monitor",
  launchers: "enterprise-gateway-kernel-launchers",
} as const;

/** What a complete peers folder holds; a folder without these is not the peers. */
const MARKERS = [
  "jupyter-kernel-controller/cmd/main.go",
  "kernel-monitor/main.py",
  "enterprise-gateway-kernel-launchers/etc/kernel-launchers/bootstrap/bootstrap-kernel.sh",
];

async function complete(root: string): Promise<boolean> {
  for (const marker of MARKERS) if (!(await exists(join(root, marker)))) return false;
  return true;
}

function layout(root: string): Peers {
  return {
    controller: join(root, FOLDERS.controller),
    monitor: join(root, FOLDERS.monitor),
    launchers: join(root, FOLDERS.launchers, "etc", "kernel-launchers"),
  };
}

function git(args: string[], cwd?: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("git", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolvePromise() : reject(new Error(`git ${args.join(" ")}: ${stderr.trim()}`)),
    );
  });
}

/** The pinned upstream of each peer, read from the table in `../shared/peers/README.md` when it is there. */
const PINNED: Record<keyof typeof FOLDERS, { url: string; commit: string }> = {
  controller: { url: "https://github.com/weekenthralling/jupyter-kernel-controller", commit: "0ae54b6b56bf" },
  monitor: { url: "https://github.com/weekenthralling/kernel-monitor", commit: "94b3369c7667" },
  launchers: { url: "https://github.com/jupyter-server/enterprise_gateway", commit: "880ab92b9a91" },
};

/** Clones the pinned upstream commits into the rig's cache, as a newcomer with internet access would get them. */
async function cloneInto(root: string): Promise<void> {
  const partial = `${root}.partial-${process.pid}`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { recursive: true });
  for (const [name, pin] of Object.entries(PINNED) as Array<
    [keyof typeof FOLDERS, (typeof PINNED)["controller"]]
  >) {
    const dir = join(partial, FOLDERS[name]);
    await git(["clone", "--quiet", "--filter=blob:none", "--no-checkout", pin.url, dir]);
    await git(["checkout", "--quiet", pin.commit], dir);
  }
  await rename(partial, root);
}

/** Where {@link findPeers} looks, beyond `PYBOX_PEERS_DIR`; tests point these elsewhere. */
export interface PeerPlaces {
  /** `../shared/peers` beside the checkout. */
  beside: string;
  /** The rig's cache, where a clone of the pinned commits goes. */
  cached: string;
  /** Clones the pinned commits into a folder (needs internet access and git). */
  clone: (root: string) => Promise<void>;
}

const DEFAULT_PLACES: PeerPlaces = {
  beside: resolve(CHECKOUT, "..", "shared", "peers"),
  cached: join(rigCacheDir(), "peers"),
  clone: cloneInto,
};

/**
 * Finds the real peers: `PYBOX_PEERS_DIR`, else `../shared/peers` beside the checkout, else the
 * pinned upstream commits cloned into the rig's cache. Never a silent skip: when none of the three
 * works, the error names all three.
 */
export async function findPeers(
  env: NodeJS.ProcessEnv = process.env,
  places: PeerPlaces = DEFAULT_PLACES,
): Promise<Peers> {
  const tried: string[] = [];
  if (env.PYBOX_PEERS_DIR) {
    if (await complete(env.PYBOX_PEERS_DIR)) return layout(env.PYBOX_PEERS_DIR);
    tried.push(`PYBOX_PEERS_DIR=${env.PYBOX_PEERS_DIR} (set, but it lacks ${MARKERS.join(", ")})`);
  } else {
    tried.push("PYBOX_PEERS_DIR (not set)");
  }
  if (await complete(places.beside)) return layout(places.beside);
  tried.push(`${places.beside} (not there)`);
  if (await complete(places.cached)) return layout(places.cached);
  try {
    await places.clone(places.cached);
    if (await complete(places.cached)) return layout(places.cached);
    tried.push(`${places.cached} (cloned, but incomplete)`);
  } catch (error) {
    tried.push(
      `${places.cached} (a clone of the pinned upstream commits failed: ${(error as Error).message})`,
    );
  }
  throw new Error(
    `The cluster rig needs the real peers (controller, monitor, launchers) and found none:\n  ${tried.join("\n  ")}`,
  );
}

/** The README beside the shared peers names the pinned commits; a test keeps {@link PINNED} in step with it. */
export async function pinnedCommitsFromReadme(peersRoot: string): Promise<Record<string, string>> {
  const readme = await readFile(join(peersRoot, "README.md"), "utf8");
  const pins: Record<string, string> = {};
  for (const match of readme.matchAll(/^\|\s*`([\w-]+)\/`\s*\|\s*([^|]+?)\s*\|\s*([0-9a-f]{7,40})\s*\|/gm)) {
    if (match[1] && match[3]) pins[match[1]] = match[3];
  }
  return pins;
}

/** The pinned commits this rig clones when no peers folder is found. */
export const PINNED_COMMITS: Record<string, string> = Object.fromEntries(
  Object.entries(PINNED).map(([name, pin]) => [FOLDERS[name as keyof typeof FOLDERS], pin.commit]),
);
