import { Sha256 } from "@aws-crypto/sha256-js";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import type { CustomObjectsApi, KubeConfig, Watch } from "@kubernetes/client-node";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";
import type { ClusterConfig } from "../../config.ts";
import { BackendUnavailableError, ConfigError } from "../../errors.ts";

/** The Kubernetes clients the cluster backend uses, made from one `KubeConfig`. */
export interface KubeClients {
  custom: CustomObjectsApi;
  watch: Watch;
}

/** EKS accepts a token for 15 minutes; we make a new one well before that. */
const EKS_TOKEN_LIFETIME_MS = 10 * 60_000;

/**
 * Clients for the configured cluster, made once per container and remade only when an EKS token
 * nears its expiry. `KubeConfig` is the single source of credentials: a kubeconfig file, one held
 * in Secrets Manager, an EKS token made in-process, or the pod's own service account.
 */
export function kubeClientsLoader(
  auth: ClusterConfig["auth"],
  deps: {
    secrets?: SecretsManagerClient;
    credentials?: AwsCredentialIdentityProvider;
    now?: () => Date;
  } = {},
): () => Promise<KubeClients> {
  let current: { clients: Promise<KubeClients>; expiresAt: number } | undefined;
  const now = deps.now ?? (() => new Date());
  return () => {
    if (!current || now().getTime() >= current.expiresAt) {
      const expiresAt =
        auth.kind === "eks" ? now().getTime() + EKS_TOKEN_LIFETIME_MS : Number.POSITIVE_INFINITY;
      const clients = Promise.all([loadKubeConfig(auth, deps, now), import("./kube-client.ts")]).then(
        ([kc, k8s]) => ({ custom: kc.makeApiClient(k8s.CustomObjectsApi), watch: new k8s.Watch(kc) }),
      );
      current = { clients, expiresAt };
      clients.catch(() => {
        current = undefined;
      });
    }
    return current.clients;
  };
}

async function loadKubeConfig(
  auth: ClusterConfig["auth"],
  deps: { secrets?: SecretsManagerClient; credentials?: AwsCredentialIdentityProvider },
  now: () => Date,
): Promise<KubeConfig> {
  // Loaded on first use, not at init: runs go straight to the pod and most never need the API.
  const { KubeConfig } = await import("./kube-client.ts");
  const kc = new KubeConfig();
  switch (auth.kind) {
    case "kubeconfig-file":
      try {
        kc.loadFromFile(auth.path);
      } catch {
        // No cause: a YAML error carries the whole file, credentials included.
        throw new ConfigError(`PYBOX_KUBECONFIG cannot be read or parsed: ${auth.path}`);
      }
      return kc;
    case "kubeconfig-secret": {
      let text: string | undefined;
      try {
        const out = await (deps.secrets ?? new SecretsManagerClient({})).send(
          new GetSecretValueCommand({ SecretId: auth.secretId }),
        );
        text = out.SecretString;
      } catch (cause) {
        throw new BackendUnavailableError("the kubeconfig secret could not be read", { cause });
      }
      if (!text) throw new ConfigError("the kubeconfig secret has no string value");
      try {
        kc.loadFromString(text);
      } catch {
        throw new ConfigError("the kubeconfig secret is not a valid kubeconfig");
      }
      return kc;
    }
    case "eks": {
      const credentials = await (deps.credentials ?? fromNodeProviderChain())();
      const token = await eksToken({
        cluster: auth.cluster,
        region: auth.region,
        credentials,
        signingDate: now(),
      });
      kc.loadFromOptions({
        clusters: [{ name: auth.cluster, server: auth.endpoint, caData: auth.caData, skipTLSVerify: false }],
        users: [{ name: "pybox", token }],
        contexts: [{ name: "pybox", cluster: auth.cluster, user: "pybox" }],
        currentContext: "pybox",
      });
      return kc;
    }
    case "in-cluster":
      kc.loadFromCluster();
      return kc;
  }
}

/**
 * An EKS bearer token, as `aws eks get-token` makes it: a presigned STS `GetCallerIdentity` URL
 * (60 s signature, `x-k8s-aws-id` header signed in), base64url-encoded without padding behind
 * `k8s-aws-v1.`. The API server's authenticator replays it to STS to learn who we are.
 */
export async function eksToken(options: {
  cluster: string;
  region: string;
  credentials: AwsCredentialIdentity;
  signingDate?: Date;
}): Promise<string> {
  const hostname = `sts.${options.region}.amazonaws.com`;
  const signer = new SignatureV4({
    service: "sts",
    region: options.region,
    credentials: options.credentials,
    sha256: Sha256,
  });
  const request = new HttpRequest({
    method: "GET",
    protocol: "https:",
    hostname,
    path: "/",
    query: { Action: "GetCallerIdentity", Version: "2011-06-15" },
    headers: { host: hostname, "x-k8s-aws-id": options.cluster },
  });
  const signed = await signer.presign(request, {
    expiresIn: 60,
    ...(options.signingDate ? { signingDate: options.signingDate } : {}),
  });
  const query = Object.entries(signed.query ?? {})
    .flatMap(([key, value]) => (Array.isArray(value) ? value.map((v) => [key, v]) : [[key, value]]))
    .map(([key, value]) => `${encodeURIComponent(String(key))}=${encodeURIComponent(String(value ?? ""))}`)
    .join("&");
  return `k8s-aws-v1.${Buffer.from(`https://${hostname}/?${query}`).toString("base64url")}`;
}
