import { execFile } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createConnection, createServer, type Server } from "node:net";
import { promisify } from "node:util";
import { signalZero as alive } from "../../../lib/backends/process.ts";

const run = promisify(execFile);

async function ip(...args: string[]): Promise<string> {
  return (await run("ip", args)).stdout;
}

/** Which process owns each slot, so a rig killed outright does not keep its slot for ever. */
const OWNERS = "/run/pybox-rig";

/** Removes the bridge and pod namespaces of slots whose owner is gone (a rig killed before its stop). */
async function sweepAbandoned(links: string): Promise<void> {
  const namespaces = await ip("netns", "list").catch(() => "");
  for (const match of links.matchAll(/ (pbxrig(\d+)):/g)) {
    const [, bridge, slot] = match;
    const owner = Number(await readFile(`${OWNERS}/${slot}`, "utf8").catch(() => "0"));
    if (owner > 0 && alive(owner)) continue;
    for (const line of namespaces.split("\n")) {
      const name = line.split(" ")[0];
      if (name?.startsWith(`${bridge}-`)) await ip("netns", "del", name).catch(() => {});
    }
    await ip("link", "del", bridge ?? "").catch(() => {});
    await rm(`${OWNERS}/${slot}`, { force: true });
  }
}

/**
 * The rig's pod network: a bridge in the host's namespace with the first address of a /24 that no
 * other rig uses, and one network namespace per pod, joined to it by a veth pair. Every address is
 * one the rig made itself; the test process reaches pod IPs through the bridge.
 */
export class PodNetwork {
  private next = 2;
  private readonly free: number[] = [];

  private constructor(
    /** The subnet's third octet, unique among rigs on this machine. */
    readonly slot: number,
    readonly bridge: string,
    /** The host's address on the bridge: pods reach the API server (through the proxy double) here. */
    readonly gateway: string,
  ) {}

  /** Creates the bridge on the first free slot. */
  static async create(): Promise<PodNetwork> {
    await sweepAbandoned(await ip("-o", "link", "show"));
    const links = await ip("-o", "link", "show");
    for (let slot = 0; slot < 256; slot++) {
      const bridge = `pbxrig${slot}`;
      if (links.includes(` ${bridge}:`)) continue;
      try {
        await ip("link", "add", bridge, "type", "bridge");
      } catch {
        continue; // another rig took it between the look and the add
      }
      const gateway = `10.233.${slot}.1`;
      try {
        await ip("addr", "add", `${gateway}/24`, "dev", bridge);
        await ip("link", "set", bridge, "up");
      } catch (error) {
        await ip("link", "del", bridge).catch(() => {});
        throw error;
      }
      await mkdir(OWNERS, { recursive: true });
      await writeFile(`${OWNERS}/${slot}`, String(process.pid));
      return new PodNetwork(slot, bridge, gateway);
    }
    throw new Error("no free pod network slot (pbxrig0..255 all exist)");
  }

  /** A namespace with its own loopback and an address on the bridge, for one pod. */
  async addPod(): Promise<{ namespace: string; ip: string; release: () => Promise<void> }> {
    const host = this.free.shift() ?? this.next++;
    if (host > 254) throw new Error("the rig's pod network is full (253 pods)");
    const namespace = `pbxrig${this.slot}-${host}`;
    const outside = `pbx${this.slot}h${host}`;
    const inside = `pbx${this.slot}p${host}`;
    const address = `10.233.${this.slot}.${host}`;
    await ip("netns", "add", namespace);
    try {
      await ip("link", "add", outside, "type", "veth", "peer", "name", inside);
      await ip("link", "set", inside, "netns", namespace);
      await ip("link", "set", outside, "master", this.bridge, "up");
      await ip("-n", namespace, "link", "set", inside, "name", "eth0");
      await ip("-n", namespace, "addr", "add", `${address}/24`, "dev", "eth0");
      await ip("-n", namespace, "link", "set", "eth0", "up");
      await ip("-n", namespace, "link", "set", "lo", "up");
      await ip("-n", namespace, "route", "add", "default", "via", this.gateway);
    } catch (error) {
      await ip("netns", "del", namespace).catch(() => {});
      await ip("link", "del", outside).catch(() => {});
      this.free.push(host);
      throw error;
    }
    return {
      namespace,
      ip: address,
      release: async () => {
        // Deleting the namespace deletes its end of the pair, and with it the other end.
        await ip("netns", "del", namespace).catch(() => {});
        await ip("link", "del", outside).catch(() => {});
        this.free.push(host);
      },
    };
  }

  async destroy(): Promise<void> {
    await ip("link", "del", this.bridge).catch(() => {});
    await rm(`${OWNERS}/${this.slot}`, { force: true });
  }
}

/**
 * A double of kube-proxy for the one Service pods need, `kubernetes`: listens on the bridge
 * address and forwards to the API server on loopback, as the Service's ClusterIP would.
 */
export async function startServiceProxy(
  listen: { host: string; port: number },
  target: { host: string; port: number },
): Promise<Server> {
  const server = createServer((downstream) => {
    const upstream = createConnection(target);
    downstream.pipe(upstream).pipe(downstream);
    const close = () => {
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on("error", close);
    upstream.on("error", close);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, resolve);
  });
  return server;
}
