import { cp, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Peers } from "./peers.ts";

/** A folder of the host shown at a path inside the container, as an image layer would put it there. */
export interface Layer {
  from: string;
  to: string;
}

/**
 * What the kubelet double knows of an image: the parts of its Dockerfile that matter to a
 * container (`ENV`, `USER`, `WORKDIR`, `ENTRYPOINT`/`CMD`) and the files it adds, as host folders.
 */
export interface ImageSpec {
  env: Record<string, string>;
  /** `USER` as uid:gid (0:0 when the Dockerfile sets none). */
  uid: number;
  gid: number;
  workdir: string;
  entrypoint: string[];
  cmd: string[];
  layers: Layer[];
}

/** Enterprise Gateway's Python kernel image, the one operators name in `KERNEL_IMAGE`. */
export const KERNEL_IMAGE = "elyra/kernel-py:3.2.3";

/** The image jupyter-kernel-controller gives its `monitor` sidecar (hard-coded there). */
export const MONITOR_IMAGE = "ghcr.io/weekenthralling/kernel-monitor:latest";

/** The Python environments standing for each image's own interpreter and packages. */
export interface ImagePythons {
  /** ipykernel, jupyter_client, pycryptodomex, pandas, matplotlib (EG's kernel-py image has them). */
  kernel: { venv: string; home: string };
  /** kernel-monitor's `requirements.txt`. */
  monitor: { venv: string; home: string };
}

/**
 * The rig's images, from the peers' Dockerfiles:
 * - `etc/docker/kernel-py/Dockerfile`: the launchers under `/usr/local/bin`, `USER jovyan` (1000:100),
 *   `ENV KERNEL_LANGUAGE=python`, `CMD /usr/local/bin/bootstrap-kernel.sh`, home `/home/jovyan`.
 * - kernel-monitor's `Dockerfile`: `WORKDIR /app` holding `main.py`, `ENV LOG_LEVEL=DEBUG`,
 *   `ENTRYPOINT ["python", "main.py"]`, root.
 * The kernel image's `/usr/local/bin` is assembled once per rig in `dir` from the launchers.
 */
export async function rigImages(
  peers: Peers,
  pythons: ImagePythons,
  dir: string,
): Promise<Map<string, ImageSpec>> {
  const usrLocalBin = join(dir, "kernel-py", "usr-local-bin");
  await rm(usrLocalBin, { recursive: true, force: true });
  await mkdir(usrLocalBin, { recursive: true });
  await cp(
    join(peers.launchers, "bootstrap", "bootstrap-kernel.sh"),
    join(usrLocalBin, "bootstrap-kernel.sh"),
  );
  await cp(join(peers.launchers, "python"), join(usrLocalBin, "kernel-launchers", "python"), {
    recursive: true,
  });
  // The venv goes to /venv, as an image's own interpreter would sit at a path of the image's: at its
  // host path it could lie under a folder the pod mounts a volume over (a checkout under /tmp).
  const pythonLayers = (python: ImagePythons["kernel"]): Layer[] => [
    { from: python.venv, to: "/venv" },
    { from: python.home, to: python.home },
  ];
  return new Map<string, ImageSpec>([
    [
      KERNEL_IMAGE,
      {
        env: {
          PATH: `/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
          HOME: "/home/jovyan",
          NB_USER: "jovyan",
          KERNEL_LANGUAGE: "python",
        },
        uid: 1000,
        gid: 100,
        workdir: "/home/jovyan",
        entrypoint: [],
        cmd: ["/bin/sh", "-c", "/usr/local/bin/bootstrap-kernel.sh"],
        layers: [{ from: usrLocalBin, to: "/usr/local/bin" }, ...pythonLayers(pythons.kernel)],
      },
    ],
    [
      MONITOR_IMAGE,
      {
        env: {
          PATH: `/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
          LOG_LEVEL: "DEBUG",
          HOME: "/root",
        },
        uid: 0,
        gid: 0,
        workdir: "/app",
        entrypoint: ["python", "main.py"],
        cmd: [],
        layers: [{ from: peers.monitor, to: "/app" }, ...pythonLayers(pythons.monitor)],
      },
    ],
  ]);
}
