/**
 * Simulated jupyter-kernel-controller: a test double that plays the controller against the
 * Kubernetes API double, so the `cluster` backend can be tested end to end with real kernels and
 * no cluster. For each `Kernel` added it starts a REAL local ipykernel (the project's venv) where
 * the pod would run, with only the pod template's env, in its `workingDir`, and then publishes the
 * connection annotation and the `Ready` condition in either order with small random delays, as the
 * real controller and kubelet do. Deleting the `Kernel` kills the process, as deleting the pod would.
 *
 * It writes through the double's in-process store (its own credentials): the HTTP faults a test
 * injects with `failNext` hit only the backend under test.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KERNEL_HOME } from "../../lib/backends/cluster/kernel-resource.ts";
import { KERNEL_ENV } from "../../lib/dev/python-env.ts";
import type { KernelObject, KubernetesDouble } from "./k8s-double.ts";

/** Where the controller publishes the kernel's connection JSON. */
export const CONNECTION_ANNOTATION = "jupyter.org/kernel-connection";
/** The annotation older controllers (and clients) use. */
export const LEGACY_CONNECTION_ANNOTATION = "jupyter.org/kernel-connection-info";
/** The label that carries the kernel id. */
export const KERNEL_ID_LABEL = "jupyter.org/kernel-id";

/** Failure modes of one kernel (or of all, set on the options). */
export interface KernelBehaviour {
  /** Publish the connection under `jupyter.org/kernel-connection-info` instead. */
  legacyAnnotation?: boolean;
  /** Start nothing; report `Ready=False`, reason `ErrImagePull`, as when the image cannot be pulled. */
  neverReady?: boolean;
  /** Start the kernel and report `Ready=True`, but never write the connection annotation. */
  noAnnotation?: boolean;
  /** Write an invalid connection annotation (`{"ip":"127.0.0.1"}`). */
  badConnection?: boolean;
  /** Announce a `comm_port` equal to the iopub port, as EG's launcher does when its two draws clash. */
  portClash?: boolean;
}

/** In which order the annotation and the Ready condition land. */
export type PublishOrder = "annotation-first" | "ready-first" | "random";

/** Options of the controller double. */
export interface KernelControllerOptions extends KernelBehaviour {
  /** Default `"random"`. */
  order?: PublishOrder;
  /** Upper bound of the random delay before each write, in ms (default 150). */
  maxDelayMs?: number;
  /** Behaviour per kernel, keyed by the `Kernel`'s name or its `jupyter.org/kernel-id` label; wins over the global one. */
  perKernel?: Record<string, KernelBehaviour>;
  /** First report `Ready=False`, reason `ContainerCreating`, while the kernel starts (default false). */
  reportPending?: boolean;
  /** How long a kernel may take to bind its ports before it is reported failed (default 30 s). */
  startTimeoutMs?: number;
  /** The interpreter with ipykernel (default: the project's kernel venv). */
  python?: string;
}

/** A running controller double. */
export interface KernelControllerDouble {
  /** Kernel name → pid of its live ipykernel process. */
  kernels(): Map<string, number>;
  /** Resolves once every kernel seen so far has finished starting (or failing). */
  settled(): Promise<void>;
  /** Stops watching and kills every kernel it started, removing their temp dirs. */
  stop(): Promise<void>;
  /** Replaces the behaviour for every Kernel created from now on (ids are random, so tests cannot name them ahead). */
  setBehaviour(behaviour: KernelBehaviour): void;
}

interface Managed {
  namespace: string;
  name: string;
  deleted: boolean;
  dir?: string;
  child?: ChildProcess;
  output: string;
  work?: Promise<void>;
}

interface Container {
  image: string | undefined;
  workingDir: string | undefined;
  env: Record<string, string>;
}

/**
 * Starts the simulated jupyter-kernel-controller on a Kubernetes API double: it reconciles the
 * `Kernel`s that already exist and every one added later. Always stopped by the test that started it.
 */
export function startKernelControllerDouble(
  api: KubernetesDouble,
  options: KernelControllerOptions = {},
): KernelControllerDouble {
  const python = options.python ?? join(KERNEL_ENV.dir, "bin", "python");
  const maxDelayMs = options.maxDelayMs ?? 150;
  const managed = new Map<string, Managed>();
  const all = new Set<Managed>();
  let stopped = false;
  let current: KernelBehaviour = {
    legacyAnnotation: options.legacyAnnotation,
    neverReady: options.neverReady,
    noAnnotation: options.noAnnotation,
    badConnection: options.badConnection,
    portClash: options.portClash,
  };

  const delay = () => sleep(Math.floor(Math.random() * (maxDelayMs + 1)));

  function behaviourFor(kernel: KernelObject): KernelBehaviour {
    const byName = options.perKernel?.[kernel.metadata.name];
    const id = kernel.metadata.labels?.[KERNEL_ID_LABEL];
    const byId = id === undefined ? undefined : options.perKernel?.[id];
    return { ...current, ...byId, ...byName };
  }

  function setReady(m: Managed, ready: boolean, reason: string, message?: string): void {
    const condition: Record<string, unknown> = {
      type: "Ready",
      status: ready ? "True" : "False",
      reason,
      lastTransitionTime: `${new Date().toISOString().slice(0, 19)}Z`,
    };
    if (message !== undefined) condition.message = message;
    api.store.mergePatch(
      m.namespace,
      m.name,
      { status: { conditions: [condition] } },
      { subresource: "status" },
    );
  }

  async function reconcile(m: Managed, kernel: KernelObject): Promise<void> {
    const behaviour = behaviourFor(kernel);
    const container = firstContainer(kernel);
    if (behaviour.neverReady) {
      await delay();
      if (m.deleted) return;
      const image = container.image ?? container.env.KERNEL_IMAGE ?? "unknown";
      setReady(m, false, "ErrImagePull", `image "${image}" not found`);
      return;
    }
    if (options.reportPending) setReady(m, false, "ContainerCreating");

    m.dir = await mkdtemp(join(tmpdir(), "pybox-kernel-double-"));
    if (m.deleted) return teardown(m);
    // The image's home is the pod's own scratch volume: here, a folder of this kernel's.
    const workDir =
      container.workingDir && container.workingDir !== KERNEL_HOME
        ? container.workingDir
        : join(m.dir, "work");
    await mkdir(workDir, { recursive: true });
    const connectionFile = join(m.dir, "connection.json");
    await writeFile(
      connectionFile,
      JSON.stringify({
        transport: "tcp",
        ip: "127.0.0.1",
        shell_port: 0,
        iopub_port: 0,
        stdin_port: 0,
        control_port: 0,
        hb_port: 0,
        key: randomBytes(32).toString("hex"),
        signature_scheme: "hmac-sha256",
      }),
      { mode: 0o600 },
    );
    if (m.deleted) return teardown(m);

    // A pod sees only its container's env (plus what the image sets: here PATH and HOME).
    const env = { PATH: `${join(KERNEL_ENV.dir, "bin")}:/usr/bin:/bin`, HOME: workDir, ...container.env };
    const child = spawn(python, ["-m", "ipykernel_launcher", "-f", connectionFile], {
      cwd: workDir,
      env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    m.child = child;
    const keep = (chunk: Buffer) => {
      m.output = (m.output + chunk.toString()).slice(-4000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    child.on("error", (error) => keep(Buffer.from(`spawn error: ${error.message}\n`)));

    const connection = await waitForPorts(connectionFile, child, m, options.startTimeoutMs ?? 30_000);
    if (m.deleted) return teardown(m);
    if (!connection) {
      setReady(m, false, "Error", `kernel did not start: ${m.output.trim().slice(-500)}`);
      return teardown(m);
    }

    const annotate = () => {
      if (behaviour.noAnnotation) return;
      const key = behaviour.legacyAnnotation ? LEGACY_CONNECTION_ANNOTATION : CONNECTION_ANNOTATION;
      const value = behaviour.badConnection
        ? JSON.stringify({ ip: "127.0.0.1" })
        : JSON.stringify({
            ...connection,
            ip: "127.0.0.1",
            ...(behaviour.portClash ? { comm_port: connection.iopub_port } : {}),
          });
      api.store.mergePatch(m.namespace, m.name, { metadata: { annotations: { [key]: value } } });
    };
    const ready = () => setReady(m, true, "KernelReady");
    const order = options.order ?? "random";
    const annotationFirst = order === "annotation-first" || (order === "random" && Math.random() < 0.5);
    for (const step of annotationFirst ? [annotate, ready] : [ready, annotate]) {
      await delay();
      if (m.deleted) return;
      step();
    }
  }

  async function teardown(m: Managed): Promise<void> {
    const child = m.child;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, "exit");
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        child.kill("SIGKILL");
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 5_000)))]);
      clearTimeout(timer);
    }
    if (m.dir) await rm(m.dir, { recursive: true, force: true });
  }

  function track(m: Managed, job: Promise<void>): void {
    m.work = job.catch((error: unknown) => {
      console.error(`kernel controller double: ${m.namespace}/${m.name}:`, error);
    });
  }

  const onAdded = (kernel: KernelObject) => {
    if (stopped) return;
    const key = `${kernel.metadata.namespace}/${kernel.metadata.name}`;
    if (managed.has(key)) return;
    const m: Managed = {
      namespace: kernel.metadata.namespace,
      name: kernel.metadata.name,
      deleted: false,
      output: "",
    };
    managed.set(key, m);
    all.add(m);
    track(m, reconcile(m, kernel));
  };

  const onDeleted = (kernel: KernelObject) => {
    const key = `${kernel.metadata.namespace}/${kernel.metadata.name}`;
    const m = managed.get(key);
    if (!m) return;
    managed.delete(key);
    m.deleted = true;
    const started = m.work ?? Promise.resolve();
    track(
      m,
      started.then(() => teardown(m)).finally(() => all.delete(m)),
    );
  };

  api.events.on("ADDED", onAdded);
  api.events.on("DELETED", onDeleted);
  for (const kernel of api.store.list()) onAdded(kernel);

  return {
    setBehaviour(behaviour: KernelBehaviour) {
      current = { ...behaviour };
    },
    kernels() {
      const out = new Map<string, number>();
      for (const m of managed.values()) {
        const child = m.child;
        if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
          out.set(m.name, child.pid);
        }
      }
      return out;
    },
    async settled() {
      await Promise.all([...all].map((m) => m.work));
    },
    async stop() {
      stopped = true;
      api.events.off("ADDED", onAdded);
      api.events.off("DELETED", onDeleted);
      const jobs = [...all].map(async (m) => {
        m.deleted = true;
        await m.work;
        await teardown(m);
      });
      await Promise.all(jobs);
      managed.clear();
      all.clear();
    },
  };
}

/** `spec.template.spec.containers[0]`: its image, working dir, and literal env values. */
function firstContainer(kernel: KernelObject): Container {
  const template = field(kernel.spec, "template");
  const podSpec = field(template, "spec");
  const containers = field(podSpec, "containers");
  const first: unknown = Array.isArray(containers) ? containers[0] : undefined;
  const env: Record<string, string> = {};
  const list = field(first, "env");
  if (Array.isArray(list)) {
    for (const item of list) {
      const name = field(item, "name");
      const value = field(item, "value");
      // valueFrom (secrets, field refs) has no meaning without a cluster: such entries are skipped.
      if (typeof name === "string" && typeof value === "string") env[name] = value;
    }
  }
  const image = field(first, "image");
  const workingDir = field(first, "workingDir");
  return {
    image: typeof image === "string" ? image : undefined,
    workingDir: typeof workingDir === "string" && workingDir ? workingDir : undefined,
    env,
  };
}

function field(value: unknown, key: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)[key]
    : undefined;
}

/** ipykernel rewrites the connection file once its sockets are bound; undefined if it died or took too long. */
async function waitForPorts(
  file: string,
  child: ChildProcess,
  m: Managed,
  timeoutMs: number,
): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !m.deleted) {
    if (child.exitCode !== null || child.signalCode !== null) return undefined;
    try {
      const info: unknown = JSON.parse(await readFile(file, "utf8"));
      if (
        typeof info === "object" &&
        info !== null &&
        ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"].every((port) => {
          const value = field(info, port);
          return typeof value === "number" && value > 0;
        })
      ) {
        return info as Record<string, unknown>;
      }
    } catch {
      // not written yet, or caught mid-write
    }
    await sleep(20);
  }
  return undefined;
}
