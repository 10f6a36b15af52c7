import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GATEWAY_ENV, KERNEL_ENV, TABLEGPT_KERNEL_ENV, TOOLS_ENV } from "../../lib/dev/python-env.ts";
import { freePort } from "./free-port.ts";

/** Which server plays the gateway: Enterprise Gateway, or a plain jupyter_server. */
export type GatewayFlavour = "enterprise" | "jupyter_server";

/** A running gateway on loopback. */
export interface RunningGateway {
  url: string;
  token: string;
  flavour: GatewayFlavour;
  output(): string;
  stop(): Promise<void>;
}

/** Variables EG passes on to kernels beyond `KERNEL_*` (its `client_envs` allowlist), for the env tests. */
export const GATEWAY_CLIENT_ENVS = ["TEAM", "PROJECT", "SHARED"];

/** The example kernelspec the README tells operators to install, and the prefix it assumes. */
const TABLEGPT_KERNELSPEC = join(
  import.meta.dirname,
  "..",
  "..",
  "deploy",
  "gateway",
  "kernelspecs",
  "python3-tablegpt",
);
const TABLEGPT_PREFIX = "/opt/tablegpt";

/** How the gateway's kernelspecs start kernels. */
export interface GatewayOptions {
  /**
   * `cd`: like EG's container kernel images, start in `KERNEL_WORKING_DIR` when the gateway passes
   * one (the default). `stock`: the spec `ipykernel install` writes, which starts every kernel in
   * the gateway's own directory, as a stock EG with local kernels does. `tablegpt`: `cd`, plus the
   * shipped example `python3-tablegpt` with its prefix pointed at the project's `.venv-tablegpt`.
   */
  kernelSpec?: "cd" | "stock" | "tablegpt";
}

/**
 * Starts a real gateway on a free loopback port with an auth token and its default local kernel
 * provisioning, without `EG_MIRROR_WORKING_DIRS`. Its one kernelspec, `python3`, runs the
 * project's kernel venv (ipykernel, pandas, matplotlib), as `options.kernelSpec` says. `extraArgs`
 * are added to the server's command line (e.g. `--EnterpriseGatewayApp.max_kernels_per_user=1`).
 * Always stopped by the test that started it.
 */
export async function startGateway(
  flavour: GatewayFlavour,
  extraArgs: readonly string[] = [],
  options: GatewayOptions = {},
): Promise<RunningGateway> {
  const home = await mkdtemp(join(tmpdir(), `pybox-${flavour}-`));
  const spec = join(home, "share", "kernels", "python3");
  await mkdir(spec, { recursive: true });
  const python = join(KERNEL_ENV.dir, "bin", "python");
  const argv =
    options.kernelSpec === "stock"
      ? [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
      : [
          "/bin/sh",
          "-c",
          `cd "\${KERNEL_WORKING_DIR:-.}" && exec "${python}" -m ipykernel_launcher -f "$0"`,
          "{connection_file}",
        ];
  await writeFile(
    join(spec, "kernel.json"),
    JSON.stringify({ argv, display_name: "Python 3 (pybox)", language: "python" }),
  );
  if (options.kernelSpec === "tablegpt") {
    const example = await readFile(join(TABLEGPT_KERNELSPEC, "kernel.json"), "utf8");
    await mkdir(join(home, "share", "kernels", "python3-tablegpt"));
    await writeFile(
      join(home, "share", "kernels", "python3-tablegpt", "kernel.json"),
      example.replaceAll(TABLEGPT_PREFIX, TABLEGPT_KERNEL_ENV.dir),
    );
  }
  const port = await freePort();
  const token = randomBytes(16).toString("hex");
  const env = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    LANG: "C.UTF-8",
    JUPYTER_PATH: join(home, "share"),
    JUPYTER_DATA_DIR: join(home, "data"),
    JUPYTER_RUNTIME_DIR: join(home, "runtime"),
    JUPYTER_CONFIG_DIR: join(home, "config"),
    MPLCONFIGDIR: join(home, "mpl"),
  };
  const [command, args] =
    flavour === "enterprise"
      ? [
          join(GATEWAY_ENV.dir, "bin", "jupyter-enterprisegateway"),
          [
            "--ip=127.0.0.1",
            `--port=${port}`,
            `--EnterpriseGatewayApp.auth_token=${token}`,
            `--EnterpriseGatewayApp.client_envs=${JSON.stringify(GATEWAY_CLIENT_ENVS)}`,
            "--EnterpriseGatewayApp.default_kernel_name=python3",
          ],
        ]
      : [
          join(TOOLS_ENV.dir, "bin", "jupyter-server"),
          [
            "--ServerApp.ip=127.0.0.1",
            `--ServerApp.port=${port}`,
            "--ServerApp.port_retries=0",
            `--IdentityProvider.token=${token}`,
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",
            `--ServerApp.root_dir=${home}`,
          ],
        ];
  const child: ChildProcess = spawn(command, [...args, ...extraArgs], {
    env,
    cwd: home,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${flavour} exited early:\n${output}`);
    const ok = await fetch(`${url}/api`, { headers: { Authorization: `token ${token}` } }).then(
      (res) => res.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${flavour} did not come up:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return {
    url,
    token,
    flavour,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(home, { recursive: true, force: true });
    },
  };
}
