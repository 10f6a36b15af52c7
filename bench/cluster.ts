import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import {
  connectionAnnotation,
  KERNEL_RESOURCE,
  KernelObjectSchema,
} from "../lib/backends/cluster/kernel-resource.ts";
import { loadConfig } from "../lib/config.ts";
import { startLocalStack } from "../lib/dev/local-stack.ts";
import { ConnectionInfoSchema } from "../lib/jupyter/connection.ts";
import { startRig } from "../test/cluster/rig/rig.ts";
import { jsonClient } from "./http-client.ts";
import { runRoundTripBench } from "./roundtrip.ts";

/**
 * `npm run bench` (cluster part): round trips on one kernel pod of the cluster rig (real
 * kube-apiserver, controller and monitor, EG's launcher; the kubelet doubled), made through the API
 * with the functions' ServiceAccount; runs go straight to the pod over ZeroMQ, as in a cluster.
 */
const rigStarted = Date.now();
const rig = await startRig();
const rigStartMs = Date.now() - rigStarted;
const stateDir = await mkdtemp(join(tmpdir(), "pybox-bench-cluster-"));
const stack = await startLocalStack(loadConfig({ PORT: "0", PYBOX_STATE_DIR: stateDir, ...rig.backendEnv }));
const http = jsonClient(stack.url);
try {
  await http.call("POST", "/kernels", { kernelId: "bench" });
  const admin = new KubeConfig();
  admin.loadFromFile(rig.adminKubeconfig);
  const list = (await admin.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
    group: KERNEL_RESOURCE.group,
    version: KERNEL_RESOURCE.version,
    plural: KERNEL_RESOURCE.plural,
    namespace: rig.namespace,
  })) as { items: unknown[] };
  const [kernel] = list.items;
  const info = ConnectionInfoSchema.parse(
    JSON.parse(connectionAnnotation(KernelObjectSchema.parse(kernel)) ?? "null"),
  );
  await runRoundTripBench({
    name: "cluster",
    title: "`1+1` round trip on one kernel pod of the cluster rig (real API server, controller, monitor)",
    setting: `The API runs in the bench process with the cluster backend and the functions' ServiceAccount token; the Kernel is made on the rig (kube-apiserver v1.37.2, jupyter-kernel-controller, kernel-monitor, EG's launcher, a kubelet double running each pod in its own network namespace), and runs go straight to the pod over ZeroMQ. The rig itself started in ${rigStartMs} ms (binaries already built).`,
    http,
    info,
  });
} finally {
  http.close();
  await stack.close();
  await rig.stop();
  await rm(stateDir, { recursive: true, force: true });
}
