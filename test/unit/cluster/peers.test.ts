import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { findPeers, PINNED_COMMITS, pinnedCommitsFromReadme } from "../../cluster/rig/peers.ts";

const MARKERS = [
  "jupyter-kernel-controller/cmd/main.go",
  "kernel-monitor/main.py",
  "enterprise-gateway-kernel-launchers/etc/kernel-launchers/bootstrap/bootstrap-kernel.sh",
];

async function peersFolder(root: string): Promise<string> {
  for (const marker of MARKERS) {
    await mkdir(dirname(join(root, marker)), { recursive: true });
    await writeFile(join(root, marker), "");
  }
  return root;
}

describe("findPeers", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "pybox-peers-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("names all three places when none has the peers, and never skips silently", async () => {
    const places = {
      beside: join(dir, "nowhere", "shared", "peers"),
      cached: join(dir, "cache", "peers"),
      clone: async () => {
        throw new Error("no route to the upstream host");
      },
    };

    await assert.rejects(findPeers({ PYBOX_PEERS_DIR: join(dir, "missing") }, places), (error: Error) => {
      assert.match(error.message, /PYBOX_PEERS_DIR=.*missing \(set, but it lacks/);
      assert.match(error.message, /nowhere\/shared\/peers \(not there\)/);
      assert.match(error.message, /cache\/peers \(a clone of the pinned upstream commits failed: no route/);
      return true;
    });
  });

  it("prefers PYBOX_PEERS_DIR, then the folder beside the checkout, then a clone into the cache", async () => {
    const explicit = await peersFolder(join(dir, "explicit"));
    const beside = await peersFolder(join(dir, "beside"));
    const cached = join(dir, "cached");
    const fail = async () => {
      throw new Error("not expected");
    };

    assert.equal(
      (await findPeers({ PYBOX_PEERS_DIR: explicit }, { beside, cached, clone: fail })).monitor,
      join(explicit, "kernel-monitor"),
    );
    assert.equal(
      (await findPeers({}, { beside, cached, clone: fail })).monitor,
      join(beside, "kernel-monitor"),
    );
    const clone = async (root: string) => {
      await peersFolder(root);
    };
    const cloned = await findPeers({}, { beside: join(dir, "absent"), cached, clone });
    assert.equal(
      cloned.launchers,
      join(cached, "enterprise-gateway-kernel-launchers", "etc", "kernel-launchers"),
    );
  });

  it("clones the commits the shared peers README pins", async () => {
    const readme = join(import.meta.dirname, "..", "..", "..", "..", "shared", "peers");
    const pins = await pinnedCommitsFromReadme(readme).catch(() => undefined);
    // Outside this workplace (no ../shared beside the checkout) the pins stand on their own.
    if (pins === undefined) return;
    assert.deepEqual(pins, PINNED_COMMITS);
  });
});
