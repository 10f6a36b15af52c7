import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type { GatewayConfig } from "../../config.ts";
import { BackendUnavailableError, ConfigError } from "../../errors.ts";

/**
 * The gateway token, resolved once per container: from config as given, or read from Secrets
 * Manager (a plain string, or JSON with a `token` field). Never logged, never put in an error.
 */
export function gatewayTokenLoader(
  config: GatewayConfig,
  client?: SecretsManagerClient,
): () => Promise<string | undefined> {
  let pending: Promise<string | undefined> | undefined;
  return () => {
    pending ??= resolveToken(config, client).catch((error: unknown) => {
      pending = undefined;
      throw error;
    });
    return pending;
  };
}

async function resolveToken(
  config: GatewayConfig,
  client?: SecretsManagerClient,
): Promise<string | undefined> {
  if (config.token !== undefined) return config.token;
  if (config.tokenSecret === undefined) return undefined;
  let secret: string | undefined;
  try {
    const out = await (client ?? new SecretsManagerClient({})).send(
      new GetSecretValueCommand({ SecretId: config.tokenSecret }),
    );
    secret = out.SecretString;
  } catch (cause) {
    throw new BackendUnavailableError("the gateway token secret could not be read", { cause });
  }
  if (!secret) throw new ConfigError("the gateway token secret has no string value");
  try {
    const parsed: unknown = JSON.parse(secret);
    if (
      parsed !== null &&
      typeof parsed === "object" &&
      typeof (parsed as { token?: unknown }).token === "string"
    ) {
      return (parsed as { token: string }).token;
    }
  } catch {
    // not JSON: the secret string is the token itself
  }
  return secret;
}
