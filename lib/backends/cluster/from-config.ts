import type { Config } from "../../config.ts";
import { ConfigError } from "../../errors.ts";
import { refreshingCredentials } from "../credential-refresh.ts";
import type { Backend } from "../port.ts";
import { ClusterBackend } from "./cluster.ts";
import { parseVolumeList } from "./kernel-resource.ts";
import { kubeClientsLoader } from "./kube-auth.ts";

/**
 * The cluster backend as configured. Volume settings are checked here, at cold start, not on
 * every kernel start; credentials are loaded again after the API server rejects them.
 */
export function clusterBackendFrom(config: Config): Backend {
  const cluster = config.cluster;
  if (!cluster) throw new ConfigError("the cluster backend is not configured");
  parseVolumeList("KERNEL_VOLUMES", config.operatorEnv.KERNEL_VOLUMES);
  parseVolumeList("KERNEL_VOLUME_MOUNTS", config.operatorEnv.KERNEL_VOLUME_MOUNTS);
  let clients = kubeClientsLoader(cluster.auth);
  const backend = new ClusterBackend({
    clients: () => clients(),
    namespace: cluster.namespace,
    image: cluster.image,
    idleTimeoutSeconds: cluster.idleTimeoutSeconds,
    cullingIntervalSeconds: cluster.cullingIntervalSeconds,
    resources: cluster.resources,
    serviceAccount: cluster.serviceAccount,
    startTimeoutMs: config.startTimeoutMs,
    keepConnectionsMs: config.keepConnectionsMs,
  });
  return refreshingCredentials(backend, () => {
    clients = kubeClientsLoader(cluster.auth);
  });
}
