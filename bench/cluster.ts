import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connectionAnnotation, KernelObjectSchema } from "../lib/backends/cluster/kernel-resource.ts";
import { loadConfig } from "../lib/config.ts";
import { startLocalStack } from "../lib/dev/local-stack.ts";
import { ensurePythonEnv, KERNEL_ENV } from "../lib/dev/python-env.ts";
import { ConnectionInfoSchema } from "../lib/jupyter/connection.ts";
import { TEST_IMAGE, writeKubeconfig } from "../test/support/cluster.ts";
import { startKubernetesDouble } from "../test/support/k8s-double.ts";
import { startKernelControllerDouble } from "../test/support/kernel-controller-double.ts";
import { jsonClient } from "./http-client.ts";
import { runRoundTripBench } from "./roundtrip.ts";

/**
 * `npm run bench` (cluster part): round trips on one "pod" kernel, made through the Kubernetes API
 * double and the simulated controller; runs go straight to the kernel over ZeroMQ, as in a cluster.
 */
await ensurePythonEnv(KERNEL_ENV);
const kube = await startKubernetesDouble({ token: "bench" });
const controller = startKernelControllerDouble(kube);
const stateDir = await mkdtemp(join(tmpdir(), "pybox-bench-cluster-"));
const kubeconfig = join(stateDir, "kubeconfig.json");
await writeKubeconfig(kubeconfig, kube.url, "bench");
const stack = await startLocalStack(
  loadConfig({
    PORT: "0",
    PYBOX_STATE_DIR: stateDir,
    PYBOX_BACKEND: "cluster",
    PYBOX_KUBECONFIG: kubeconfig,
    PYBOX_KERNEL_ENV: JSON.stringify({ KERNEL_IMAGE: TEST_IMAGE }),
  }),
);
const http = jsonClient(stack.url);
try {
  await http.call("POST", "/kernels", { kernelId: "bench" });
  const [kernel] = kube.store.list("default");
  const annotation = connectionAnnotation(KernelObjectSchema.parse(kernel));
  const info = ConnectionInfoSchema.parse(JSON.parse(annotation ?? "null"));
  await runRoundTripBench({
    name: "cluster",
    title: "`1+1` round trip on one cluster kernel (Kubernetes API double, simulated controller)",
    setting:
      "The API runs in the bench process with the cluster backend; the Kernel is made through the Kubernetes API double and its kernel started by the controller double, and runs go straight to it over ZeroMQ.",
    http,
    info,
  });
} finally {
  http.close();
  await stack.close();
  await controller.stop();
  await kube.close();
  await rm(stateDir, { recursive: true, force: true });
}
