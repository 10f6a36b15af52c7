import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { chmod, lstat, mkdir, readlink, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  ApiException,
  CoreV1Api,
  type KubeConfig,
  makeInformer,
  type V1Container,
  type V1ContainerStatus,
  type V1Pod,
  type V1PodCondition,
  type V1Volume,
} from "@kubernetes/client-node";
import type { ImageSpec } from "./images.ts";
import type { PodNetwork } from "./network.ts";

/**
 * A DOUBLE of the kubelet, the one part of the rig that cannot run here (no container runtime).
 * Everything it talks to is real: it registers a Node, binds the Pods nobody scheduled to it (there
 * is no scheduler either), and runs each Pod as a kubelet would, with local processes in place of
 * containers:
 * - one network namespace per Pod (its containers share it, as in a real Pod), with an address on
 *   the rig's bridge that the test process reaches;
 * - each container in a mount and PID namespace of its own (bubblewrap), its root made of the host's
 *   system folders read-only plus the image's layers ({@link ImageSpec}), a writable scratch root
 *   unless `readOnlyRootFilesystem`, and the Pod's volumes: `emptyDir`, and the projected
 *   ServiceAccount token the API server's admission adds, fetched by TokenRequest bound to the Pod;
 * - the container's user from `runAsUser`/`runAsGroup` or the image's `USER`, refused when
 *   `runAsNonRoot` meets root; `allowPrivilegeEscalation: false` as no_new_privs; dropped
 *   capabilities dropped; env with the downward API and the `kubernetes` Service variables;
 * - status like a kubelet's: phase, podIP, conditions, container states, patched on `pods/status`;
 * - graceful deletion: SIGTERM to each container's PID 1, SIGKILL after the grace period, then the
 *   final delete.
 * Images it does not know fail to pull (`ErrImagePull`), as an unknown image would.
 */
export interface KubeletDoubleOptions {
  kubeConfig: KubeConfig;
  nodeName: string;
  network: PodNetwork;
  /** Where pods' volumes and tokens live while they run. */
  dir: string;
  /** Where containers' output is kept, as `<namespace>_<pod>_<uid>/<container>.log` (a kubelet's /var/log/pods). */
  logDir: string;
  images: Map<string, ImageSpec>;
  /** The `kubernetes` Service as pods see it (the service proxy double). */
  apiService: { host: string; port: number };
  log?: (line: string) => void;
}

interface RunningContainer {
  name: string;
  child: ChildProcess;
  /** The host PID of the container's PID 1, from bubblewrap's info fd. */
  initPid?: number;
  startedAt: Date;
  exit?: { code: number | null; signal: NodeJS.Signals | null; at: Date };
  /** Settles when the container's process has exited, however it ended. */
  exited: Promise<void>;
}

interface RunningPod {
  uid: string;
  namespace: string;
  name: string;
  ip: string;
  release: () => Promise<void>;
  containers: RunningContainer[];
  waiting: Map<string, { reason: string; message: string }>;
  terminating?: Promise<void>;
  statusWrites: Promise<void>;
}

/** The double's handle: stop it to kill every pod it runs and unregister its node. */
export interface KubeletDouble {
  stop(): Promise<void>;
}

const SYSTEM_DIRS = ["/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"];

/** Starts the double: registers its Node, then runs the Pods bound to it until stopped. */
export async function startKubeletDouble(options: KubeletDoubleOptions): Promise<KubeletDouble> {
  const core = options.kubeConfig.makeApiClient(CoreV1Api);
  const log = options.log ?? (() => {});
  const pods = new Map<string, RunningPod>();
  const starting = new Set<string>();
  let stopped = false;

  await core.createNode({
    body: {
      metadata: { name: options.nodeName, labels: { "kubernetes.io/hostname": options.nodeName } },
      status: {
        conditions: [
          { type: "Ready", status: "True", reason: "KubeletReady", message: "kubelet double is ready" },
        ],
        addresses: [{ type: "InternalIP", address: options.network.gateway }],
        capacity: { cpu: "2", memory: "16Gi", pods: "110", "ephemeral-storage": "50Gi" },
        allocatable: { cpu: "2", memory: "16Gi", pods: "110", "ephemeral-storage": "50Gi" },
      },
    },
  });
  // The API server ignores status on create; a kubelet reports it on the status subresource.
  const node = await core.readNode({ name: options.nodeName });
  node.status = {
    ...node.status,
    conditions: [
      {
        type: "Ready",
        status: "True",
        reason: "KubeletReady",
        message: "kubelet double is ready",
        lastHeartbeatTime: new Date(),
        lastTransitionTime: new Date(),
      },
    ],
    addresses: [{ type: "InternalIP", address: options.network.gateway }],
    capacity: { cpu: "2", memory: "16Gi", pods: "110", "ephemeral-storage": "50Gi" },
    allocatable: { cpu: "2", memory: "16Gi", pods: "110", "ephemeral-storage": "50Gi" },
  };
  await core.replaceNodeStatus({ name: options.nodeName, body: node });

  const key = (pod: V1Pod) => `${pod.metadata?.namespace}/${pod.metadata?.name}`;

  /** Writes the pod's status from what runs, on a fresh read each time (a 409 is retried). */
  const report = (running: RunningPod): Promise<void> => {
    running.statusWrites = running.statusWrites.then(async () => {
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          const pod = await core.readNamespacedPod({ name: running.name, namespace: running.namespace });
          if (pod.metadata?.uid !== running.uid) return;
          pod.status = podStatus(pod, running);
          await core.replaceNamespacedPodStatus({
            name: running.name,
            namespace: running.namespace,
            body: pod,
          });
          return;
        } catch (error) {
          if (error instanceof ApiException && error.code === 404) return;
          if (!(error instanceof ApiException && error.code === 409)) {
            log(`status of ${running.namespace}/${running.name}: ${(error as Error).message}`);
            return;
          }
        }
      }
    });
    return running.statusWrites;
  };

  const bind = async (pod: V1Pod) => {
    const { name, namespace } = pod.metadata ?? {};
    if (!name || !namespace) return;
    try {
      await core.createNamespacedBinding({
        namespace,
        body: {
          metadata: { name, namespace },
          target: { apiVersion: "v1", kind: "Node", name: options.nodeName },
        },
      });
    } catch (error) {
      if (!(error instanceof ApiException && (error.code === 409 || error.code === 404))) throw error;
    }
  };

  const start = async (pod: V1Pod) => {
    const podKey = key(pod);
    if (pods.has(podKey) || starting.has(podKey) || stopped) return;
    starting.add(podKey);
    try {
      const { name = "", namespace = "", uid = "" } = pod.metadata ?? {};
      const net = await options.network.addPod();
      const podDir = join(options.dir, "pods", uid);
      await mkdir(join(podDir, "volumes"), { recursive: true });
      const running: RunningPod = {
        uid,
        name,
        namespace,
        ip: net.ip,
        release: net.release,
        containers: [],
        waiting: new Map(),
        statusWrites: Promise.resolve(),
      };
      pods.set(podKey, running);
      log(`pod ${podKey}: network ${net.namespace} ${net.ip}`);
      // Stopped while the network was being made: stop's sweep has passed, so this pod ends here.
      if (stopped) {
        pods.delete(podKey);
        await terminate(running, 0);
        return;
      }
      let volumes: Map<string, string>;
      try {
        volumes = await prepareVolumes(core, pod, podDir);
      } catch (error) {
        for (const container of pod.spec?.containers ?? [])
          running.waiting.set(container.name, {
            reason: "CreateContainerConfigError",
            message: (error as Error).message,
          });
        await report(running);
        return;
      }
      for (const container of pod.spec?.containers ?? []) {
        const image = options.images.get(container.image ?? "");
        if (!image) {
          running.waiting.set(container.name, {
            reason: "ErrImagePull",
            message: `Failed to pull image "${container.image}": the kubelet double knows no such image`,
          });
          continue;
        }
        const user = effectiveUser(pod, container, image);
        if (runAsNonRoot(pod, container) && user.uid === 0) {
          running.waiting.set(container.name, {
            reason: "CreateContainerConfigError",
            message: "Error: container has runAsNonRoot and image will run as root",
          });
          continue;
        }
        let launched: Awaited<ReturnType<typeof launchContainer>>;
        try {
          launched = await launchContainer({
            pod,
            container,
            image,
            user,
            netns: net.namespace,
            podIp: net.ip,
            volumes,
            logDir: join(options.logDir, `${namespace}_${name}_${uid}`),
            nodeName: options.nodeName,
            apiService: options.apiService,
          });
        } catch (error) {
          // What a kubelet cannot turn into a container (an env source, a mount) waits, said why.
          running.waiting.set(container.name, {
            reason: "CreateContainerConfigError",
            message: (error as Error).message,
          });
          continue;
        }
        let markExited: () => void = () => {};
        const entry: RunningContainer = {
          name: container.name,
          child: launched.child,
          startedAt: new Date(),
          exited: new Promise((resolve) => {
            markExited = resolve;
          }),
        };
        launched.initPid.then((pid) => {
          entry.initPid = pid;
        });
        launched.child.on("exit", (code, signal) => {
          entry.exit = { code, signal, at: new Date() };
          markExited();
          log(`pod ${podKey}: container ${container.name} exited (${code ?? signal})`);
          if (!running.terminating) void report(running);
        });
        running.containers.push(entry);
      }
      await report(running);
    } finally {
      starting.delete(podKey);
    }
  };

  /** SIGTERM to each container's PID 1, SIGKILL after the grace period, then the network and files go. */
  const terminate = (running: RunningPod, graceSeconds: number): Promise<void> => {
    running.terminating ??= (async () => {
      log(`pod ${running.namespace}/${running.name}: terminating, grace ${graceSeconds} s`);
      for (const container of running.containers.filter((c) => !c.exit)) signalInit(container, "SIGTERM");
      const deadline = Date.now() + graceSeconds * 1000;
      while (Date.now() < deadline && running.containers.some((container) => !container.exit))
        await new Promise((resolve) => setTimeout(resolve, 100));
      for (const container of running.containers.filter((c) => !c.exit)) {
        signalInit(container, "SIGKILL");
        container.child.kill("SIGKILL");
      }
      await Promise.all(running.containers.map((container) => container.exited));
      // A kubelet reports the terminal phase first: the API server deletes only a terminal pod at once.
      await report(running);
      await running.release();
      await rm(join(options.dir, "pods", running.uid), { recursive: true, force: true });
      log(`pod ${running.namespace}/${running.name}: terminated`);
    })();
    return running.terminating;
  };

  const handle = async (pod: V1Pod) => {
    if (stopped) return;
    const podKey = key(pod);
    const { name, namespace, deletionTimestamp } = pod.metadata ?? {};
    if (!name || !namespace) return;
    if (!pod.spec?.nodeName) {
      if (!deletionTimestamp && (pod.spec?.schedulerName ?? "default-scheduler") === "default-scheduler")
        await bind(pod);
      return;
    }
    if (pod.spec.nodeName !== options.nodeName) return;
    let running = pods.get(podKey);
    if (running && running.uid !== pod.metadata?.uid) {
      // A new pod of the same name (the controller remakes a deleted kernel's pod under its name).
      pods.delete(podKey);
      await terminate(running, 0);
      running = undefined;
    }
    if (deletionTimestamp) {
      const grace = pod.metadata?.deletionGracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30;
      if (running) {
        await terminate(running, grace);
        pods.delete(podKey);
      }
      // The kubelet's last word: the pod may go now.
      await core
        .deleteNamespacedPod({
          name,
          namespace,
          // The API server reads DeleteOptions from the body when there is one, not from the query.
          body: { gracePeriodSeconds: 0, preconditions: { uid: pod.metadata?.uid } },
        })
        .catch((error: unknown) => {
          log(`pod ${podKey}: final delete failed: ${(error as Error).message.slice(0, 500)}`);
        });
      return;
    }
    if (!running) await start(pod);
  };

  const informer = makeInformer(options.kubeConfig, "/api/v1/pods", () => core.listPodForAllNamespaces());
  const queue = new Map<string, Promise<void>>();
  const enqueue = (pod: V1Pod) => {
    const podKey = key(pod);
    const next = (queue.get(podKey) ?? Promise.resolve())
      .then(() => handle(pod))
      .catch((error: unknown) => log(`pod ${podKey}: ${(error as Error).message}`));
    queue.set(podKey, next);
  };
  informer.on("add", enqueue);
  informer.on("update", enqueue);
  informer.on("delete", (pod: V1Pod) => {
    const running = pods.get(key(pod));
    if (running && running.uid === pod.metadata?.uid) {
      pods.delete(key(pod));
      void terminate(running, 0);
    }
  });
  informer.on("error", () => {
    if (!stopped) setTimeout(() => void informer.start().catch(() => {}), 500);
  });
  await informer.start();

  return {
    async stop() {
      stopped = true;
      await informer.stop();
      await Promise.all([...pods.values()].map((running) => terminate(running, 0)));
      pods.clear();
      await core.deleteNode({ name: options.nodeName }).catch(() => {});
    },
  };
}

function signalInit(container: RunningContainer, signal: NodeJS.Signals): void {
  if (container.initPid === undefined) return;
  try {
    process.kill(container.initPid, signal);
  } catch {}
}

function runAsNonRoot(pod: V1Pod, container: V1Container): boolean {
  return container.securityContext?.runAsNonRoot ?? pod.spec?.securityContext?.runAsNonRoot ?? false;
}

function effectiveUser(pod: V1Pod, container: V1Container, image: ImageSpec): { uid: number; gid: number } {
  const context = { ...pod.spec?.securityContext, ...container.securityContext };
  return { uid: context.runAsUser ?? image.uid, gid: context.runAsGroup ?? image.gid };
}

/** Host folders for the pod's volumes, by name: `emptyDir` and the projected ServiceAccount token. */
async function prepareVolumes(core: CoreV1Api, pod: V1Pod, podDir: string): Promise<Map<string, string>> {
  const volumes = new Map<string, string>();
  for (const volume of pod.spec?.volumes ?? []) {
    const dir = join(podDir, "volumes", volume.name);
    await mkdir(dir, { recursive: true });
    if (volume.emptyDir) {
      await chmod(dir, 0o777);
    } else if (volume.projected) {
      await project(core, pod, volume, dir);
    } else {
      throw new Error(
        `volume ${volume.name}: the kubelet double supports emptyDir and projected volumes only`,
      );
    }
    volumes.set(volume.name, dir);
  }
  return volumes;
}

async function project(core: CoreV1Api, pod: V1Pod, volume: V1Volume, dir: string): Promise<void> {
  const namespace = pod.metadata?.namespace ?? "";
  for (const source of volume.projected?.sources ?? []) {
    if (source.serviceAccountToken) {
      const request = await core.createNamespacedServiceAccountToken({
        name: pod.spec?.serviceAccountName ?? "default",
        namespace,
        body: {
          spec: {
            audiences: source.serviceAccountToken.audience ? [source.serviceAccountToken.audience] : [],
            expirationSeconds: source.serviceAccountToken.expirationSeconds ?? 3607,
            boundObjectRef: {
              apiVersion: "v1",
              kind: "Pod",
              name: pod.metadata?.name,
              uid: pod.metadata?.uid,
            },
          },
        },
      });
      await writeFile(join(dir, source.serviceAccountToken.path), request.status?.token ?? "", {
        mode: 0o644,
      });
    } else if (source.configMap) {
      const map = await core.readNamespacedConfigMap({ name: source.configMap.name ?? "", namespace });
      for (const item of source.configMap.items ?? []) {
        await writeFile(join(dir, item.path), map.data?.[item.key] ?? "", { mode: 0o644 });
      }
    } else if (source.downwardAPI) {
      for (const item of source.downwardAPI.items ?? []) {
        const value = item.fieldRef ? fieldValue(pod, item.fieldRef.fieldPath, "") : "";
        await writeFile(join(dir, item.path), value, { mode: 0o644 });
      }
    }
  }
}

/** The downward API: the fields a kubelet resolves for env and volumes. */
function fieldValue(pod: V1Pod, path: string, podIp: string): string {
  switch (path) {
    case "metadata.name":
      return pod.metadata?.name ?? "";
    case "metadata.namespace":
      return pod.metadata?.namespace ?? "";
    case "metadata.uid":
      return pod.metadata?.uid ?? "";
    case "spec.nodeName":
      return pod.spec?.nodeName ?? "";
    case "spec.serviceAccountName":
      return pod.spec?.serviceAccountName ?? "";
    case "status.podIP":
      return podIp;
    default:
      throw new Error(`the kubelet double does not resolve fieldRef ${path}`);
  }
}

/** The bubblewrap arguments that give a container the host's system folders read-only and nothing else of it. */
async function rootArguments(): Promise<string[]> {
  const args: string[] = [];
  for (const dir of SYSTEM_DIRS) {
    try {
      const stat = await lstat(dir);
      if (stat.isSymbolicLink()) args.push("--symlink", await readlink(dir), dir);
      else args.push("--ro-bind", dir, dir);
    } catch {}
  }
  return args;
}

async function launchContainer(input: {
  pod: V1Pod;
  container: V1Container;
  image: ImageSpec;
  user: { uid: number; gid: number };
  netns: string;
  podIp: string;
  volumes: Map<string, string>;
  logDir: string;
  nodeName: string;
  apiService: { host: string; port: number };
}): Promise<{ child: ChildProcess; initPid: Promise<number> }> {
  const { pod, container, image, user } = input;
  const env: Record<string, string> = {
    ...image.env,
    HOSTNAME: pod.metadata?.name ?? "",
    KUBERNETES_SERVICE_HOST: input.apiService.host,
    KUBERNETES_SERVICE_PORT: String(input.apiService.port),
    KUBERNETES_SERVICE_PORT_HTTPS: String(input.apiService.port),
    KUBERNETES_PORT: `tcp://${input.apiService.host}:${input.apiService.port}`,
  };
  for (const variable of container.env ?? []) {
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (variable.valueFrom?.fieldRef)
      env[variable.name] = fieldValue(pod, variable.valueFrom.fieldRef.fieldPath, input.podIp);
    else if (variable.valueFrom)
      throw new Error(`env ${variable.name}: only values and fieldRefs are supported`);
  }
  const workdir = container.workingDir ?? image.workdir;
  const bwrap = [
    ...(await rootArguments()),
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--perms",
    "1777",
    "--dir",
    "/tmp",
  ];
  // bubblewrap makes missing parents with the host's modes (/root is 0700): an image's folders are 0755.
  const made = new Set(["/", "/tmp"]);
  const parents = (path: string) => {
    const parts = path.split("/").filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const dir = `/${parts.slice(0, i).join("/")}`;
      if (made.has(dir) || SYSTEM_DIRS.some((system) => dir === system || dir.startsWith(`${system}/`)))
        continue;
      made.add(dir);
      bwrap.push("--perms", "0755", "--dir", dir);
    }
  };
  for (const layer of image.layers) {
    parents(layer.to);
    bwrap.push("--ro-bind", layer.from, layer.to);
  }
  parents(workdir);
  bwrap.push("--perms", "0755", "--dir", workdir);
  for (const mount of container.volumeMounts ?? []) {
    const source = input.volumes.get(mount.name);
    if (!source) throw new Error(`volumeMount ${mount.name}: no such volume`);
    parents(mount.mountPath);
    bwrap.push(mount.readOnly ? "--ro-bind" : "--bind", source, mount.mountPath);
  }
  if (container.securityContext?.readOnlyRootFilesystem) bwrap.push("--remount-ro", "/");
  bwrap.push(
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--hostname",
    pod.metadata?.name ?? "pod",
    "--as-pid-1",
    "--die-with-parent",
    "--new-session",
    "--chdir",
    workdir,
    "--info-fd",
    "3",
  );
  const setpriv = ["/usr/bin/setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups"];
  const security = container.securityContext;
  if (security?.allowPrivilegeEscalation === false) setpriv.push("--no-new-privs");
  const dropAll = security?.capabilities?.drop?.includes("ALL") ?? false;
  if (dropAll || user.uid !== 0) setpriv.push("--inh-caps=-all", "--bounding-set=-all");
  const command = container.command ?? image.entrypoint;
  const args = container.args ?? (container.command ? [] : image.cmd);
  const argv = [...command, ...args];
  await mkdir(input.logDir, { recursive: true });
  const out = openSync(join(input.logDir, `${container.name}.log`), "a");
  const child = spawn(
    "nsenter",
    [`--net=/run/netns/${input.netns}`, "--", "bwrap", ...bwrap, "--", ...setpriv, "--", ...argv],
    { env, stdio: ["ignore", out, out, "pipe"] },
  );
  // A process that cannot be started ends like one that exited: the container is terminated.
  child.on("error", () => child.emit("exit", 127, null));
  const initPid = new Promise<number>((resolve) => {
    let text = "";
    const info = child.stdio[3];
    info?.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      const match = /"child-pid"\s*:\s*(\d+)/.exec(text);
      if (match?.[1]) resolve(Number(match[1]));
    });
  });
  return { child, initPid };
}

/** The Pod status a kubelet would write for what runs now. */
function podStatus(pod: V1Pod, running: RunningPod): V1Pod["status"] {
  const now = new Date();
  const statuses: V1ContainerStatus[] = (pod.spec?.containers ?? []).map((container) => {
    const waiting = running.waiting.get(container.name);
    const entry = running.containers.find((c) => c.name === container.name);
    const base = { name: container.name, image: container.image ?? "", imageID: "", restartCount: 0 };
    if (waiting || !entry) {
      return {
        ...base,
        ready: false,
        started: false,
        state: { waiting: waiting ?? { reason: "ContainerCreating" } },
      };
    }
    if (entry.exit) {
      const exitCode = entry.exit.code ?? 137;
      return {
        ...base,
        ready: false,
        started: false,
        containerID: `double://${entry.child.pid}`,
        state: {
          terminated: {
            exitCode,
            reason: exitCode === 0 ? "Completed" : "Error",
            startedAt: entry.startedAt,
            finishedAt: entry.exit.at,
          },
        },
      };
    }
    return {
      ...base,
      ready: true,
      started: true,
      containerID: `double://${entry.child.pid}`,
      state: { running: { startedAt: entry.startedAt } },
    };
  });
  const allReady = statuses.length > 0 && statuses.every((status) => status.ready);
  const anyRunning = statuses.some((status) => status.state?.running);
  const anyWaiting = statuses.some((status) => status.state?.waiting);
  const allTerminated = statuses.every((status) => status.state?.terminated);
  const phase = allTerminated
    ? statuses.some((status) => status.state?.terminated?.exitCode !== 0)
      ? "Failed"
      : "Succeeded"
    : anyWaiting && !anyRunning
      ? "Pending"
      : "Running";
  const previous = new Map((pod.status?.conditions ?? []).map((condition) => [condition.type, condition]));
  const condition = (type: string, ok: boolean, reason?: string): V1PodCondition => {
    const status = ok ? "True" : "False";
    const before = previous.get(type);
    return {
      type,
      status,
      lastTransitionTime: before?.status === status ? before.lastTransitionTime : now,
      ...(ok || !reason
        ? {}
        : {
            reason,
            message: `containers with unready status: [${statuses
              .filter((s) => !s.ready)
              .map((s) => s.name)
              .join(" ")}]`,
          }),
    };
  };
  return {
    phase,
    podIP: running.ip,
    podIPs: [{ ip: running.ip }],
    hostIP: pod.status?.hostIP,
    startTime: pod.status?.startTime ?? now,
    conditions: [
      condition("PodReadyToStartContainers", true),
      condition("Initialized", true),
      condition("Ready", allReady, "ContainersNotReady"),
      condition("ContainersReady", allReady, "ContainersNotReady"),
      condition("PodScheduled", true),
    ],
    containerStatuses: statuses,
  };
}
