import { Validations } from "aws-cdk-lib";
import { type ISecret, Secret } from "aws-cdk-lib/aws-secretsmanager";
import { Construct } from "constructs";
import type { Settings } from "./settings.ts";

/**
 * The backend's credentials in Secrets Manager, when the backend has any: the Enterprise Gateway
 * token (an existing secret, or one made here for the operator to fill) or a kubeconfig (always
 * the operator's own). EKS clusters need none: the functions sign their own token.
 */
export class BackendSecret extends Construct {
  readonly secret: ISecret;
  /** The environment variable that names the secret to the functions. */
  readonly variable: "PYBOX_GATEWAY_TOKEN_SECRET" | "PYBOX_KUBECONFIG_SECRET";
  /** True when this stack made the secret (its value is then the operator's to set). */
  readonly created: boolean;

  /** The secret the settings call for, or undefined when the backend needs none. */
  static of(scope: Construct, id: string, settings: Settings): BackendSecret | undefined {
    if (settings.gateway || settings.cluster?.auth.kind === "kubeconfig-secret") {
      return new BackendSecret(scope, id, settings);
    }
    return undefined;
  }

  private constructor(scope: Construct, id: string, settings: Settings) {
    super(scope, id);
    if (settings.gateway) {
      this.variable = "PYBOX_GATEWAY_TOKEN_SECRET";
      const arn = settings.gateway.tokenSecretArn;
      this.created = arn === undefined;
      if (arn) {
        this.secret = Secret.fromSecretCompleteArn(this, "Imported", arn);
      } else {
        const secret = new Secret(this, "GatewayToken", {
          description:
            'pybox: the Enterprise Gateway auth token. Put the token here (plain text, or {"token": "..."}); the functions read it at cold start and again after the gateway refuses it.',
        });
        Validations.of(secret).acknowledge({
          id: "AwsSolutions-SMG4",
          reason:
            "The token is issued by the operator's Enterprise Gateway, which Secrets Manager cannot rotate; the operator rotates it on the gateway and here, and the functions re-read it after a 401.",
        });
        this.secret = secret;
      }
      return;
    }
    const auth = settings.cluster?.auth;
    if (auth?.kind !== "kubeconfig-secret") throw new Error("BackendSecret: the backend needs no secret");
    this.variable = "PYBOX_KUBECONFIG_SECRET";
    this.created = false;
    this.secret = Secret.fromSecretCompleteArn(this, "Imported", auth.secretArn);
  }
}
