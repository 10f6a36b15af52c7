import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KubernetesDouble, startKubernetesDouble } from "./k8s-double.ts";
import {
  type KernelControllerDouble,
  type KernelControllerOptions,
  startKernelControllerDouble,
} from "./kernel-controller-double.ts";
import { type LocalApi, startLocalApi } from "./local-api.ts";

/** The image the operator configures; the controller double runs a local ipykernel whatever it says. */
export const TEST_IMAGE = "registry.example/pybox/kernel:test";

/** A kubeconfig for the API double, as an operator would hand one to the functions. */
export async function writeKubeconfig(file: string, server: string, token: string): Promise<void> {
  await writeFile(
    file,
    JSON.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "double", cluster: { server, "insecure-skip-tls-verify": true } }],
      users: [{ name: "pybox", user: { token } }],
      contexts: [{ name: "double", context: { cluster: "double", user: "pybox" } }],
      "current-context": "double",
    }),
  );
}

/** The Kubernetes API double, the controller double, and our API on the cluster backend. */
export interface ClusterHarness {
  kube: KubernetesDouble;
  controller: KernelControllerDouble;
  server: LocalApi;
  kubeconfig: string;
  stop(): Promise<void>;
}

/**
 * Starts the doubles and the dev API server configured as operators would: a kubeconfig file for
 * the API server (bearer token), the kernel image in the operator kernel env.
 */
export async function startClusterHarness(
  options: { controller?: KernelControllerOptions; env?: Record<string, string> } = {},
): Promise<ClusterHarness> {
  const token = "double-token";
  const kube = await startKubernetesDouble({ token });
  const controller = startKernelControllerDouble(kube, options.controller);
  const dir = await mkdtemp(join(tmpdir(), "pybox-kube-"));
  const kubeconfig = join(dir, "kubeconfig.json");
  await writeKubeconfig(kubeconfig, kube.url, token);
  let server: LocalApi;
  try {
    server = await startLocalApi({
      PYBOX_BACKEND: "cluster",
      PYBOX_KUBECONFIG: kubeconfig,
      PYBOX_CLUSTER_NAMESPACE: "kernels",
      PYBOX_KERNEL_ENV: JSON.stringify({ KERNEL_IMAGE: TEST_IMAGE }),
      ...options.env,
    });
  } catch (error) {
    await controller.stop();
    await kube.close();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    kube,
    controller,
    server,
    kubeconfig,
    async stop() {
      await server.stop();
      await controller.stop();
      await kube.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
