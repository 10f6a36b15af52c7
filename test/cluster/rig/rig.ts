import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadAllYaml,
} from "@kubernetes/client-node";
import { PROJECT_ROOT } from "../../../lib/config.ts";
import { ensurePythonEnv, RIG_KERNEL_ENV, RIG_MONITOR_ENV } from "../../../lib/dev/python-env.ts";
import { freePort } from "../../support/free-port.ts";
import { buildRig, type RigBinaries } from "./build.ts";
import { type Daemon, startDaemon } from "./daemon.ts";
import { KERNEL_IMAGE, rigImages } from "./images.ts";
import { type KubeletDouble, startKubeletDouble } from "./kubelet-double.ts";
import { PodNetwork, startServiceProxy } from "./network.ts";
import { findPeers, type Peers } from "./peers.ts";
import { makePki, type RigPki } from "./pki.ts";

const run = promisify(execFile);

/** The project's manifests for a cluster, applied to the rig as an operator would apply them. */
const MANIFESTS_DIR = join(PROJECT_ROOT, "deploy", "cluster", "manifests");

/** The kernels' namespace and the identities the manifests make. */
const RIG_NAMESPACE = "pybox-kernels";
const CONTROLLER = { namespace: "pybox-system", serviceAccount: "jupyter-kernel-controller" };
const FUNCTIONS = { namespace: RIG_NAMESPACE, serviceAccount: "pybox-functions" };

/** A running rig: real etcd, kube-apiserver, kube-controller-manager, controller; a kubelet double. */
export interface ClusterRig {
  /** Folder of its state, certificates, kubeconfigs and logs. */
  dir: string;
  /** Kubeconfig of the functions' ServiceAccount: what the backend runs with (never admin). */
  functionsKubeconfig: string;
  /** Kubeconfig with `system:masters`, for the tests' own look at what happened. */
  adminKubeconfig: string;
  namespace: string;
  /** The environment with which the API (`npm start` or the tests) serves cluster mode on this rig. */
  backendEnv: Record<string, string>;
  stop(): Promise<void>;
}

interface Kubeconfig {
  server: string;
  ca: string;
  user: { token: string } | { cert: string; key: string };
}

async function writeKubeconfigFile(file: string, config: Kubeconfig): Promise<void> {
  const user =
    "token" in config.user
      ? { token: config.user.token }
      : { "client-certificate": config.user.cert, "client-key": config.user.key };
  await writeFile(
    file,
    JSON.stringify(
      {
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "rig", cluster: { server: config.server, "certificate-authority": config.ca } }],
        users: [{ name: "rig-user", user }],
        contexts: [{ name: "rig", context: { cluster: "rig", user: "rig-user", namespace: RIG_NAMESPACE } }],
        "current-context": "rig",
      },
      null,
      2,
    ),
    { mode: 0o600 },
  );
}

function loadKubeconfig(file: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromFile(file);
  return config;
}

/** GET over TLS with the admin certificate: the API server's readiness before any client exists. */
function adminGet(pki: RigPki, port: number, path: string): Promise<{ status: number; body: string }> {
  return Promise.all([readFile(pki.caCert), readFile(pki.adminCert), readFile(pki.adminKey)]).then(
    ([ca, cert, key]) =>
      new Promise((resolve, reject) => {
        const req = request({ host: "127.0.0.1", port, path, ca, cert, key, timeout: 2_000 }, (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => {
            body += chunk.toString();
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on("error", reject);
        req.on("timeout", () => req.destroy(new Error("timeout")));
        req.end();
      }),
  );
}

/** Applies every manifest in {@link MANIFESTS_DIR}, in file order, with `${VAR}`s filled from `values`. */
async function applyManifests(kubeConfig: KubeConfig, values: Record<string, string>): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kubeConfig);
  for (const file of (await readdir(MANIFESTS_DIR)).filter((name) => name.endsWith(".yaml")).sort()) {
    const text = (await readFile(join(MANIFESTS_DIR, file), "utf8")).replace(
      /\$\{(\w+)\}/g,
      (_, name: string) => {
        const value = values[name];
        if (value === undefined) throw new Error(`${file} needs \${${name}}`);
        return value;
      },
    );
    for (const object of loadAllYaml(text) as KubernetesObject[]) await createOrKeep(api, object);
  }
}

async function createOrKeep(api: KubernetesObjectApi, object: KubernetesObject): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await api.create(object);
      return;
    } catch (error) {
      if (error instanceof ApiException && error.code === 409) return;
      // A namespace made a moment ago may not be usable yet, nor a type just registered.
      if (attempt < 20 && error instanceof ApiException && (error.code === 404 || error.code === 429)) {
        await sleep(250);
        continue;
      }
      throw error;
    }
  }
}

/** A token of a ServiceAccount, as `kubectl create token` gets one. */
async function serviceAccountToken(core: CoreV1Api, namespace: string, name: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      const request = await core.createNamespacedServiceAccountToken({
        name,
        namespace,
        body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
      });
      const token = request.status?.token;
      if (!token) throw new Error(`no token for ${namespace}/${name}`);
      return token;
    } catch (error) {
      if (attempt < 20 && error instanceof ApiException && error.code === 404) {
        await sleep(250);
        continue;
      }
      throw error;
    }
  }
}

async function waitForCrd(kubeConfig: KubeConfig, name: string): Promise<void> {
  const api = kubeConfig.makeApiClient(ApiextensionsV1Api);
  for (let attempt = 0; attempt < 100; attempt++) {
    const crd = await api.readCustomResourceDefinition({ name }).catch(() => undefined);
    if (crd?.status?.conditions?.some((c) => c.type === "Established" && c.status === "True")) return;
    await sleep(200);
  }
  throw new Error(`CRD ${name} was not established`);
}

/** The Python home of a venv's interpreter, which the images must show at the same path. */
async function pythonHome(venv: string): Promise<string> {
  const { stdout } = await run(join(venv, "bin", "python"), ["-c", "import sys; print(sys.base_prefix)"]);
  return stdout.trim();
}

/**
 * Starts the rig: builds what is not built yet, then etcd, kube-apiserver (real RBAC, certificates
 * of its own, loopback only), kube-controller-manager, the project's manifests, the controller
 * with the corrected RBAC and its own ServiceAccount token, and the kubelet double. Anything that
 * fails to start stops everything started before it.
 */
export async function startRig(
  options: { log?: (line: string) => void; peers?: Peers } = {},
): Promise<ClusterRig> {
  const log = options.log ?? ((line: string) => console.error(`[rig] ${line}`));
  const peers = options.peers ?? (await findPeers());
  const bin: RigBinaries = await buildRig({ peers, log });
  const [kernelBin, monitorBin] = [
    await ensurePythonEnv(RIG_KERNEL_ENV, log),
    await ensurePythonEnv(RIG_MONITOR_ENV, log),
  ];
  const dir = await mkdtemp(join(tmpdir(), "pybox-rig-"));
  const daemons: Daemon[] = [];
  let network: PodNetwork | undefined;
  let proxy: Server | undefined;
  let kubelet: KubeletDouble | undefined;
  const stop = async () => {
    await kubelet?.stop().catch(() => {});
    for (const daemon of [...daemons].reverse()) await daemon.stop();
    await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve(undefined)));
    await network?.destroy();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    network = await PodNetwork.create();
    const pki = await makePki(dir, [network.gateway]);
    const logs = join(dir, "logs");
    await mkdir(logs);

    const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
    daemons.push(
      await startDaemon({
        name: "etcd",
        command: bin.etcd,
        args: [
          "--name=rig",
          `--data-dir=${join(dir, "etcd")}`,
          `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
          `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
          `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
          `--initial-cluster=rig=http://127.0.0.1:${etcdPeer}`,
          "--unsafe-no-fsync",
        ],
        log: join(logs, "etcd.log"),
        ready: async () => (await fetch(`http://127.0.0.1:${etcdClient}/health`)).ok,
      }),
    );

    const server = `https://127.0.0.1:${apiPort}`;
    daemons.push(
      await startDaemon({
        name: "kube-apiserver",
        command: bin.kubeApiserver,
        args: [
          `--etcd-servers=http://127.0.0.1:${etcdClient}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${apiPort}`,
          `--advertise-address=${network.gateway}`,
          "--service-cluster-ip-range=10.96.0.0/24",
          "--authorization-mode=Node,RBAC",
          "--enable-admission-plugins=NodeRestriction",
          "--allow-privileged=false",
          `--client-ca-file=${pki.caCert}`,
          `--tls-cert-file=${pki.serverCert}`,
          `--tls-private-key-file=${pki.serverKey}`,
          "--service-account-issuer=https://kubernetes.default.svc",
          `--service-account-key-file=${pki.serviceAccountPub}`,
          `--service-account-signing-key-file=${pki.serviceAccountKey}`,
          `--cert-dir=${join(dir, "apiserver-certs")}`,
          "--endpoint-reconciler-type=none",
          "--profiling=false",
        ],
        log: join(logs, "kube-apiserver.log"),
        ready: async () => (await adminGet(pki, apiPort, "/readyz")).status === 200,
        timeoutMs: 120_000,
      }),
    );

    const adminKubeconfig = join(dir, "admin.kubeconfig");
    await writeKubeconfigFile(adminKubeconfig, {
      server,
      ca: pki.caCert,
      user: { cert: pki.adminCert, key: pki.adminKey },
    });
    const admin = loadKubeconfig(adminKubeconfig);
    const core = admin.makeApiClient(CoreV1Api);

    // Before kube-controller-manager: its garbage collector then knows Kernels from its first sync.
    await applyCrd(admin, peers);
    await applyManifests(admin, {
      // The functions reach pods from the host's end of the bridge; the API server is behind the proxy double.
      PYBOX_FUNCTIONS_CIDR: `${network.gateway}/32`,
      PYBOX_API_SERVER_CIDR: `${network.gateway}/32`,
    });

    const kcmKubeconfig = join(dir, "kcm.kubeconfig");
    await writeKubeconfigFile(kcmKubeconfig, {
      server,
      ca: pki.caCert,
      user: { cert: pki.controllerManagerCert, key: pki.controllerManagerKey },
    });
    const kcmPort = await freePort();
    daemons.push(
      await startDaemon({
        name: "kube-controller-manager",
        command: bin.kubeControllerManager,
        args: [
          `--kubeconfig=${kcmKubeconfig}`,
          `--authentication-kubeconfig=${kcmKubeconfig}`,
          `--authorization-kubeconfig=${kcmKubeconfig}`,
          "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,root-ca-cert-publisher",
          "--use-service-account-credentials=true",
          `--service-account-private-key-file=${pki.serviceAccountKey}`,
          `--root-ca-file=${pki.caCert}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${kcmPort}`,
          "--profiling=false",
        ],
        log: join(logs, "kube-controller-manager.log"),
        // The serviceaccount controller makes `default` in every namespace: kcm is working.
        ready: async () => {
          await core.readNamespacedServiceAccount({ name: "default", namespace: "default" });
          return true;
        },
        timeoutMs: 120_000,
      }),
    );

    proxy = await startServiceProxy(
      { host: network.gateway, port: 443 },
      { host: "127.0.0.1", port: apiPort },
    );

    const controllerKubeconfig = join(dir, "controller.kubeconfig");
    await writeKubeconfigFile(controllerKubeconfig, {
      server,
      ca: pki.caCert,
      user: { token: await serviceAccountToken(core, CONTROLLER.namespace, CONTROLLER.serviceAccount) },
    });
    const controllerLog = join(logs, "jupyter-kernel-controller.log");
    daemons.push(
      await startDaemon({
        name: "jupyter-kernel-controller",
        command: bin.kernelController,
        args: ["--health-probe-bind-address=0", "--metrics-bind-address=0", "--leader-elect=false"],
        env: { ...process.env, KUBECONFIG: controllerKubeconfig },
        log: controllerLog,
        ready: async () => (await readFile(controllerLog, "utf8")).includes("Starting workers"),
        timeoutMs: 60_000,
      }),
    );

    const functionsKubeconfig = join(dir, "functions.kubeconfig");
    await writeKubeconfigFile(functionsKubeconfig, {
      server,
      ca: pki.caCert,
      user: { token: await serviceAccountToken(core, FUNCTIONS.namespace, FUNCTIONS.serviceAccount) },
    });

    const images = await rigImages(
      peers,
      {
        kernel: { venv: join(kernelBin, ".."), home: await pythonHome(join(kernelBin, "..")) },
        monitor: { venv: join(monitorBin, ".."), home: await pythonHome(join(monitorBin, "..")) },
      },
      join(dir, "images"),
    );
    kubelet = await startKubeletDouble({
      kubeConfig: admin,
      nodeName: "rig-node",
      network,
      dir: join(dir, "kubelet"),
      logDir: join(logs, "pods"),
      images,
      apiService: { host: network.gateway, port: 443 },
      log: (line) => void writeFile(join(logs, "kubelet-double.log"), `${line}\n`, { flag: "a" }),
    });
    return {
      dir,
      functionsKubeconfig,
      adminKubeconfig,
      namespace: RIG_NAMESPACE,
      backendEnv: {
        PYBOX_BACKEND: "cluster",
        PYBOX_KUBECONFIG: functionsKubeconfig,
        PYBOX_CLUSTER_NAMESPACE: RIG_NAMESPACE,
        PYBOX_KERNEL_ENV: JSON.stringify({ KERNEL_IMAGE }),
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The controller's own CRD, from its `config/crd/`, as its README installs it. */
async function applyCrd(admin: KubeConfig, peers: Peers): Promise<void> {
  const file = join(peers.controller, "config", "crd", "bases", "jupyter.org_kernels.yaml");
  const api = KubernetesObjectApi.makeApiClient(admin);
  for (const object of loadAllYaml(await readFile(file, "utf8")) as KubernetesObject[])
    await createOrKeep(api, object);
  await waitForCrd(admin, "kernels.jupyter.org");
}
