import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  NetworkingV1Api,
  RbacAuthorizationV1Api,
  type V1Pod,
} from "@kubernetes/client-node";
import { KERNEL_ID_LABEL, KERNEL_RESOURCE } from "../../lib/backends/cluster/kernel-resource.ts";
import { loadConfig } from "../../lib/config.ts";
import { startLocalStack } from "../../lib/dev/local-stack.ts";
import { describeBackendBehaviour } from "../integration/behaviour.ts";
import { describeFileBehaviour } from "../integration/files-behaviour.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";
import { type ClusterRig, startRig } from "./rig/rig.ts";

/*
 * Cluster mode on the real peers: etcd, kube-apiserver and kube-controller-manager built from Go
 * modules, jupyter-kernel-controller and kernel-monitor from ../shared/peers, Enterprise Gateway's
 * launcher in the kernel "image"; only the kubelet is a double. The backend runs with the token of
 * the functions' ServiceAccount from deploy/cluster/manifests, never as admin.
 */

let rigPromise: Promise<ClusterRig> | undefined;
/** One rig for the whole file: it starts in seconds once built, but not in no time. */
function rig(): Promise<ClusterRig> {
  rigPromise ??= startRig();
  return rigPromise;
}

after(async () => {
  if (rigPromise) await (await rigPromise).stop();
});

function kubeconfig(file: string): KubeConfig {
  const config = new KubeConfig();
  config.loadFromFile(file);
  return config;
}

/** The API served on the rig, with `env` on top of the rig's own settings. */
async function serve(env: Record<string, string> = {}): Promise<{ rig: ClusterRig; server: LocalApi }> {
  const r = await rig();
  const server = await startLocalApi({ ...r.backendEnv, ...env });
  return { rig: r, server };
}

/** The pod of the caller's kernel, found by the kernel-id label the Kernel carries (admin eyes only). */
async function podOf(r: ClusterRig, kernelIdLabel: string): Promise<V1Pod | undefined> {
  const core = kubeconfig(r.adminKubeconfig).makeApiClient(CoreV1Api);
  const pods = await core.listNamespacedPod({
    namespace: r.namespace,
    labelSelector: `jupyter.org/kernel-id=${kernelIdLabel}`,
  });
  return pods.items[0];
}

/** The backend's own kernel id (the `KERNEL_ID` env of the pod), from inside the kernel. */
async function backendKernelId(server: LocalApi, caller: string, kernelId: string): Promise<string> {
  const printed = await server.api.as(caller).eval(kernelId, "import os\nos.environ['KERNEL_ID']");
  return printed.replace(/^'|'$/g, "");
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

describeBackendBehaviour(
  "cluster",
  async () => {
    const { rig: r, server } = await serve();
    return {
      api: server.api,
      stop: () => server.stop(),
      // A pod deleted out of band, as a node drain or an operator would.
      async killKernel(kernelId: string) {
        const id = await backendKernelId(server, "alice", kernelId);
        const core = kubeconfig(r.adminKubeconfig).makeApiClient(CoreV1Api);
        const pod = await podOf(r, id);
        assert.ok(pod?.metadata?.name, "the kernel's pod exists");
        await core.deleteNamespacedPod({
          name: pod.metadata.name,
          namespace: r.namespace,
          gracePeriodSeconds: 0,
        });
        // The controller makes a new pod under the same Kernel at once: wait for the old one's end.
        await waitFor("the pod to go", async () =>
          (await podOf(r, id))?.metadata?.uid === pod.metadata?.uid ? undefined : true,
        );
      },
    };
  },
  { label: "cluster rig (real API server, controller and monitor; kubelet double)", sharedDisk: false },
);

describeFileBehaviour(
  "cluster",
  async (env) => {
    const { server } = await serve(env);
    return { api: server.api, stop: () => server.stop() };
  },
  { label: "cluster rig", sharedDisk: false },
);

describe("cluster rig: kernel pods that untrusted code cannot escape", { timeout: 600_000 }, () => {
  let r: ClusterRig;
  let server: LocalApi;
  let pod: V1Pod;
  const kernel = "hostile";

  before(async () => {
    ({ rig: r, server } = await serve());
    const started = await server.api.as("mallory").start({ kernelId: kernel });
    assert.equal(started.status, 201, started.text);
    const found = await podOf(r, await backendKernelId(server, "mallory", kernel));
    assert.ok(found);
    pod = found;
  });

  after(async () => {
    await server?.stop();
  });

  it("finds no ServiceAccount token in the kernel's container", async () => {
    const listing = await server.api
      .as("mallory")
      .eval(
        kernel,
        "import os\nd='/var/run/secrets/kubernetes.io/serviceaccount'\n(os.path.isdir(d), sorted(os.listdir(d)) if os.path.isdir(d) else None)",
      );
    assert.equal(listing, "(True, [])");
  });

  it("is refused by the API server when it calls without a token", async () => {
    const code = [
      "import json, os, ssl, urllib.request, urllib.error",
      "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']",
      "ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE",
      "try:",
      "    urllib.request.urlopen(f'https://{host}:{port}/apis/jupyter.org/v1/namespaces/pybox-kernels/kernels', context=ctx, timeout=5)",
      "    answer = 'allowed'",
      "except urllib.error.HTTPError as e:",
      "    answer = e.code",
      "answer",
    ].join("\n");
    const answer = await server.api.as("mallory").eval(kernel, code);
    assert.ok(answer === "401" || answer === "403", `refused, got ${answer}`);
  });

  it("runs the code as uid 1000 on a read-only root, with the home and /tmp writable", async () => {
    const code = [
      "import os",
      "def can_write(path):",
      "    try:",
      "        with open(path, 'w') as f: f.write('x')",
      "        os.remove(path); return True",
      "    except OSError: return False",
      "(os.getuid(), can_write('/usr/local/bin/planted'), can_write('/etc/planted'), can_write(os.path.join(os.getcwd(), 'ok')), can_write('/tmp/ok'))",
    ].join("\n");
    assert.equal(await server.api.as("mallory").eval(kernel, code), "(1000, False, False, True, True)");
  });

  it("has no capabilities and cannot gain privileges", async () => {
    const status = await server.api
      .as("mallory")
      .eval(
        kernel,
        "dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if l.startswith(('CapEff','CapBnd','NoNewPrivs')))",
      );
    assert.match(status, /'CapEff': '0000000000000000'/);
    assert.match(status, /'CapBnd': '0000000000000000'/);
    assert.match(status, /'NoNewPrivs': '1'/);
  });

  it("was made by the controller with our securityContext, limits and token shadow", () => {
    const containers = pod.spec?.containers ?? [];
    const main = containers[0];
    const monitor = containers.find((container) => container.name === "monitor");
    assert.ok(main && monitor, "the kernel container and the controller's monitor sidecar");
    assert.equal(main.name, pod.metadata?.name, "the controller renames containers[0] to the Kernel's name");
    assert.match(main.command?.join(" ") ?? "", /bootstrap-kernel\.sh/, "the controller forced its command");
    assert.equal(main.securityContext?.runAsNonRoot, true);
    assert.equal(main.securityContext?.allowPrivilegeEscalation, false);
    assert.equal(main.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(main.securityContext?.capabilities?.drop, ["ALL"]);
    assert.equal(main.securityContext?.seccompProfile?.type, "RuntimeDefault");
    assert.deepEqual(main.resources?.limits, { cpu: "1", memory: "4Gi", "ephemeral-storage": "2Gi" });
    assert.deepEqual(main.resources?.requests, main.resources?.limits);
    const shadow = main.volumeMounts?.find(
      (m) => m.mountPath === "/var/run/secrets/kubernetes.io/serviceaccount",
    );
    assert.ok(
      shadow && pod.spec?.volumes?.find((v) => v.name === shadow.name)?.emptyDir,
      "an empty volume, not the token",
    );
    const monitorToken = monitor.volumeMounts?.find(
      (m) => m.mountPath === "/var/run/secrets/kubernetes.io/serviceaccount",
    );
    assert.ok(
      monitorToken && pod.spec?.volumes?.find((v) => v.name === monitorToken.name)?.projected,
      "the monitor keeps its token",
    );
    assert.equal(pod.spec?.serviceAccountName, "pybox-kernel-monitor");
    assert.equal(pod.spec?.terminationGracePeriodSeconds, 5);
  });

  it("keeps pods (which hold the monitor's private key) out of the functions' reach", async () => {
    const core = kubeconfig(r.functionsKubeconfig).makeApiClient(CoreV1Api);
    await assert.rejects(
      core.listNamespacedPod({ namespace: r.namespace }),
      (error: unknown) => error instanceof ApiException && error.code === 403,
    );
    await assert.rejects(
      core.readNamespacedPod({ name: pod.metadata?.name ?? "", namespace: r.namespace }),
      (error: unknown) => error instanceof ApiException && error.code === 403,
    );
  });

  it("admits the namespace's NetworkPolicies and enforces Pod Security baseline there", async () => {
    // A hostPath volume is valid Kubernetes that baseline forbids: only Pod Security admission refuses it.
    const admin = kubeconfig(r.adminKubeconfig);
    const policies = await admin
      .makeApiClient(NetworkingV1Api)
      .listNamespacedNetworkPolicy({ namespace: r.namespace });
    assert.deepEqual(policies.items.map((policy) => policy.metadata?.name).sort(), [
      "kernels-default-deny",
      "kernels-from-functions",
      "kernels-to-dns-and-api",
    ]);
    const core = admin.makeApiClient(CoreV1Api);
    await assert.rejects(
      core.createNamespacedPod({
        namespace: r.namespace,
        dryRun: "All",
        body: {
          metadata: { name: "host-path-probe" },
          spec: {
            containers: [
              { name: "c", image: "busybox", volumeMounts: [{ name: "host", mountPath: "/host" }] },
            ],
            volumes: [{ name: "host", hostPath: { path: "/" } }],
          },
        },
      }),
      (error: unknown) =>
        error instanceof ApiException && error.code === 403 && /baseline/.test(String(error.body)),
    );
  });
});

describe("cluster rig: kernels that do not come up, and the ends of kernels", { timeout: 600_000 }, () => {
  it("fails a start on an image that cannot be pulled with a 503 naming it, and deletes the Kernel", async () => {
    const { rig: r, server } = await serve({
      PYBOX_KERNEL_ENV: JSON.stringify({ KERNEL_IMAGE: "registry.invalid/nope:1" }),
    });
    try {
      const started = Date.now();
      const res = await server.api.as("bob").start({ kernelId: "no-image" });
      assert.equal(res.status, 503, res.text);
      assert.match(res.text, /KERNEL_LAUNCH_FAILED/);
      assert.match(res.text, /ErrImagePull|ImagePullBackOff/);
      assert.ok(Date.now() - started < 60_000, "well within the start timeout");
      const custom = kubeconfig(r.adminKubeconfig).makeApiClient(CustomObjectsApi);
      await waitFor("the Kernel to be deleted", async () => {
        const list = (await custom.listNamespacedCustomObject({
          group: "jupyter.org",
          version: "v1",
          namespace: r.namespace,
          plural: "kernels",
        })) as {
          items: Array<{ spec?: { template?: { spec?: { containers?: Array<{ image?: string }> } } } }>;
        };
        const left = list.items.filter(
          (k) => k.spec?.template?.spec?.containers?.[0]?.image === "registry.invalid/nope:1",
        );
        return left.length === 0 ? true : undefined;
      });
    } finally {
      await server.stop();
    }
  });

  it("fails a start clearly and early when the monitor dies (its RBAC gone), after one fresh launch, and deletes the Kernels", async () => {
    const { rig: r, server } = await serve({ PYBOX_START_TIMEOUT_MS: "20000" });
    const rbac = kubeconfig(r.adminKubeconfig).makeApiClient(RbacAuthorizationV1Api);
    const binding = await rbac.readNamespacedRoleBinding({
      name: "pybox-kernel-monitor",
      namespace: r.namespace,
    });
    await rbac.deleteNamespacedRoleBinding({ name: "pybox-kernel-monitor", namespace: r.namespace });
    try {
      const started = Date.now();
      const res = await server.api.as("bob").start({ kernelId: "mute-monitor" });
      assert.equal(res.status, 503, res.text);
      assert.match(res.text, /KERNEL_LAUNCH_FAILED/);
      assert.match(
        res.text,
        /could not be launched \(2 launches\): the pod lost readiness before announcing its connection: its monitor sidecar exited/,
      );
      assert.ok(Date.now() - started < 20_000, "before the start timeout: a dead monitor is not waited out");
      const custom = kubeconfig(r.adminKubeconfig).makeApiClient(CustomObjectsApi);
      const list = (await custom.listNamespacedCustomObject({
        group: "jupyter.org",
        version: "v1",
        namespace: r.namespace,
        plural: "kernels",
        labelSelector: "app.kubernetes.io/managed-by=pybox-serverless",
      })) as { items: Array<{ metadata: { name: string; deletionTimestamp?: string } }> };
      assert.ok(list.items.every((k) => !k.metadata.name.startsWith("bob-") || k.metadata.deletionTimestamp));
    } finally {
      binding.metadata = { name: "pybox-kernel-monitor", namespace: r.namespace };
      await rbac.createNamespacedRoleBinding({ namespace: r.namespace, body: binding });
      await server.stop();
    }
  });

  it("culls an idle kernel by our own records (upstream culling never happens): the reaper deletes its Kernel, and its pod goes", async () => {
    const r = await rig();
    const stateDir = await mkdtemp(join(tmpdir(), "pybox-rig-reaper-"));
    const stack = await startLocalStack(
      loadConfig({ PORT: "0", PYBOX_STATE_DIR: stateDir, ...r.backendEnv }),
    );
    const custom = kubeconfig(r.adminKubeconfig).makeApiClient(CustomObjectsApi);
    const kernelsOf = async (id: string) =>
      (
        (await custom.listNamespacedCustomObject({
          group: KERNEL_RESOURCE.group,
          version: KERNEL_RESOURCE.version,
          plural: KERNEL_RESOURCE.plural,
          namespace: r.namespace,
          labelSelector: `${KERNEL_ID_LABEL}=${id}`,
        })) as { items: unknown[] }
      ).items.length;
    try {
      await stack.sandbox.start("erin", { kernelId: "idle" });
      await stack.sandbox.start("erin", { kernelId: "busy" });
      const idle = String(
        await stack.sandbox
          .run("erin", "idle", "import os; os.environ['KERNEL_ID']")
          .then((res) => res.data[0]?.["text/plain"]),
      ).replaceAll("'", "");
      await sleep(1_500);
      await stack.sandbox.run("erin", "busy", "x = 1");

      const report = await stack.sandbox.reap(1_000);

      assert.equal(report.idle, 1);
      assert.equal(await kernelsOf(idle), 0, "the idle kernel's Kernel was deleted");
      await waitFor(
        "the idle kernel's pod to go",
        async () => ((await podOf(r, idle)) ? undefined : true),
        30_000,
      );
      assert.equal((await stack.sandbox.run("erin", "busy", "x")).data[0]?.["text/plain"], "1");
    } finally {
      await stack.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it("hands a pooled pod to a start, named for its caller, and starts cold for a cwd (a volume of the pod)", async () => {
    const r = await rig();
    const stateDir = await mkdtemp(join(tmpdir(), "pybox-rig-pool-"));
    const stack = await startLocalStack(
      loadConfig({ PORT: "0", PYBOX_STATE_DIR: stateDir, PYBOX_POOL_SIZE: "1", ...r.backendEnv }),
    );
    const custom = kubeconfig(r.adminKubeconfig).makeApiClient(CustomObjectsApi);
    const kernelIds = async () =>
      (
        (await custom.listNamespacedCustomObject({
          group: KERNEL_RESOURCE.group,
          version: KERNEL_RESOURCE.version,
          plural: KERNEL_RESOURCE.plural,
          namespace: r.namespace,
          labelSelector: "app.kubernetes.io/managed-by=pybox-serverless",
        })) as { items: Array<{ metadata: { labels: Record<string, string>; deletionTimestamp?: string } }> }
      ).items
        .filter((kernel) => !kernel.metadata.deletionTimestamp)
        .map((kernel) => String(kernel.metadata.labels[KERNEL_ID_LABEL]));
    const seen = async (kernelId: string) =>
      JSON.parse(
        String(
          (
            await stack.sandbox.run(
              "frank",
              kernelId,
              "import json, os; json.dumps([os.environ['KERNEL_ID'], os.environ['KERNEL_USERNAME'], os.environ.get('MY_SETTING'), os.getcwd()])",
            )
          ).data[0]?.["text/plain"],
        ).replace(/^'|'$/g, ""),
      ) as [string, string, string | null, string];
    let ours: string[] = [];
    try {
      assert.equal(await stack.warmed, 1);
      const before = new Set(await kernelIds());

      await stack.sandbox.start("frank", { kernelId: "pooled", env: { MY_SETTING: "on" } });
      await stack.sandbox.start("frank", { kernelId: "cold", env: { MY_SETTING: "on" }, cwd: "/tmp/work" });

      const [pooledId, username, setting] = await seen("pooled");
      assert.ok(before.has(pooledId), "the kernel did not come from the pool");
      assert.equal(setting, "on");
      const [coldId, coldUsername, , coldCwd] = await seen("cold");
      assert.ok(!before.has(coldId));
      assert.equal(coldCwd, "/tmp/work");
      assert.equal(username, coldUsername, "the pooled kernel does not name its caller as a cold one does");
    } finally {
      ours = await kernelIds().catch(() => []);
      await stack.close();
      await rm(stateDir, { recursive: true, force: true });
    }
    const left = (await kernelIds()).filter((id) => ours.includes(id));
    assert.deepEqual(left, [], "Kernels of the server and its pool outlived it");
  });

  it("stops without waiting for the pod, which the garbage collector then removes within its grace period", async () => {
    const { rig: r, server } = await serve();
    try {
      const api = server.api.as("carol");
      assert.equal((await api.start({ kernelId: "brief" })).status, 201);
      const id = await backendKernelId(server, "carol", "brief");
      assert.ok(await podOf(r, id));
      const began = Date.now();
      const stopped = await api.stop("brief");
      assert.equal(stopped.status, 204, stopped.text);
      assert.ok(Date.now() - began < 5_000, `stop answered in ${Date.now() - began} ms`);
      await waitFor("the pod to go", async () => ((await podOf(r, id)) ? undefined : true), 30_000);
    } finally {
      await server.stop();
    }
  });
});
