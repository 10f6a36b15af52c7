import { ClusterBackend } from "./backends/cluster.ts";
import { refreshingCredentials } from "./backends/credential-refresh.ts";
import { GatewayBackend } from "./backends/gateway.ts";
import { type GatewaySettings, gatewaySettings } from "./backends/gateway-api.ts";
import { gatewayTokenLoader } from "./backends/gateway-token.ts";
import { parseVolumeList } from "./backends/kernel-resource.ts";
import { kubeClientsLoader } from "./backends/kube-auth.ts";
import { LocalBackend } from "./backends/local.ts";
import type { Backend } from "./backends/port.ts";
import { type Config, getConfig } from "./config.ts";
import { ConfigError } from "./errors.ts";
import { SandboxService } from "./sandbox/service.ts";
import { createDocumentClient } from "./store/dynamodb.ts";
import { KernelStore } from "./store/kernel-store.ts";

/** The backend the configuration names. */
export function createBackend(config: Config): Backend {
  switch (config.backend) {
    case "local":
      return new LocalBackend({ ...config.local, startTimeoutMs: config.startTimeoutMs });
    case "gateway": {
      const gateway = config.gateway;
      if (!gateway) throw new ConfigError("PYBOX_GATEWAY_URL is required for the gateway backend");
      let token = gatewayTokenLoader(gateway);
      let settings: Promise<GatewaySettings> | undefined;
      const backend = new GatewayBackend({
        settings: () => {
          settings ??= token().then((t) => gatewaySettings(gateway.url, t, gateway.requestTimeoutMs));
          settings.catch(() => {
            settings = undefined;
          });
          return settings;
        },
        kernelName: gateway.kernelName,
        startTimeoutMs: config.startTimeoutMs,
      });
      return refreshingCredentials(backend, () => {
        token = gatewayTokenLoader(gateway);
        settings = undefined;
      });
    }
    case "cluster": {
      const cluster = config.cluster;
      if (!cluster) throw new ConfigError("the cluster backend is not configured");
      // Checked at cold start, not on every kernel start.
      parseVolumeList("KERNEL_VOLUMES", config.operatorEnv.KERNEL_VOLUMES);
      parseVolumeList("KERNEL_VOLUME_MOUNTS", config.operatorEnv.KERNEL_VOLUME_MOUNTS);
      let clients = kubeClientsLoader(cluster.auth);
      const backend = new ClusterBackend({
        clients: () => clients(),
        namespace: cluster.namespace,
        image: cluster.image,
        idleTimeoutSeconds: cluster.idleTimeoutSeconds,
        cullingIntervalSeconds: cluster.cullingIntervalSeconds,
        startTimeoutMs: config.startTimeoutMs,
      });
      return refreshingCredentials(backend, () => {
        clients = kubeClientsLoader(cluster.auth);
      });
    }
  }
}

/** Wires config, store and backend into the service; exported for tests and the dev server. */
export function createSandbox(config: Config): SandboxService {
  const store = new KernelStore(createDocumentClient(config.dynamodb), config.table, config.recordTtlSeconds);
  return new SandboxService(store, createBackend(config), {
    operatorEnv: config.operatorEnv,
    startTimeoutMs: config.startTimeoutMs,
    run: config.run,
  });
}

let sandbox: SandboxService | undefined;

/** The service of this container, built on first use (cold start) and reused by every invocation. */
export function getSandbox(): SandboxService {
  sandbox ??= createSandbox(getConfig());
  return sandbox;
}
