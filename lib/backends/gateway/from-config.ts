import type { Config } from "../../config.ts";
import { ConfigError } from "../../errors.ts";
import { refreshingCredentials } from "../credential-refresh.ts";
import type { Backend } from "../port.ts";
import { type GatewaySettings, gatewaySettings } from "./api.ts";
import { GatewayBackend } from "./gateway.ts";
import { gatewayTokenLoader } from "./token.ts";

/**
 * The gateway backend as configured: the token is read once (env or Secrets Manager) and read
 * afresh after the gateway rejects it, so a rotated secret is picked up without a redeploy.
 */
export function gatewayBackendFrom(config: Config): Backend {
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
    createCwd: gateway.createCwd,
    keepConnectionsMs: config.keepConnectionsMs,
    startTimeoutMs: config.startTimeoutMs,
  });
  return refreshingCredentials(backend, () => {
    token = gatewayTokenLoader(gateway);
    settings = undefined;
  });
}
