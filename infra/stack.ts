import { CfnOutput, CfnParameter, Duration, Stack, type StackProps } from "aws-cdk-lib";
import { CfnAccessEntry } from "aws-cdk-lib/aws-eks";
import { type FunctionUrl, FunctionUrlAuthType, InvokeMode } from "aws-cdk-lib/aws-lambda";
import type { Construct } from "constructs";
import { FUNCTION_NAMES, FUNCTIONS, KERNEL_STARTERS } from "../lib/functions.ts";
import { KernelApi } from "./api.ts";
import { KernelFunctions } from "./functions.ts";
import { Monitoring } from "./monitoring.ts";
import { RunQueue } from "./queue.ts";
import { ReaperSchedule } from "./reaper.ts";
import { BackendSecret } from "./secrets.ts";
import type { Settings } from "./settings.ts";
import { KernelTable } from "./table.ts";

/** Props of {@link PyboxStack}: the validated settings (see `infra/settings.ts`). */
export interface PyboxStackProps extends StackProps {
  settings: Settings;
}

/**
 * The deployable product, one construct per concern: the table, the backend's secret, the eight
 * functions, the HTTP API in front of six of them, the run queue feeding the consumer, and the
 * reaper's schedule. Nothing in it runs, or costs, while no one calls it.
 */
export class PyboxStack extends Stack {
  readonly kernels: KernelTable;
  readonly backendSecret: BackendSecret | undefined;
  readonly functions: KernelFunctions;
  readonly runQueue: RunQueue;
  /** The Function URL of streamed runs (`POST /kernels/{kernelId}/run` with `Accept: text/event-stream`). */
  readonly streamUrl: FunctionUrl;
  /** The alarms, their optional topic, and the dashboard. */
  readonly monitoring: Monitoring;
  readonly api: KernelApi;
  readonly reaper: ReaperSchedule;

  constructor(scope: Construct, id: string, props: PyboxStackProps) {
    super(scope, id, props);
    const settings = withGatewayUrl(this, props.settings);
    this.kernels = new KernelTable(this, "Kernels");
    this.backendSecret = BackendSecret.of(this, "BackendSecret", settings);
    this.functions = new KernelFunctions(this, "Functions", {
      settings,
      table: this.kernels,
      ...(this.backendSecret
        ? { backendSecret: { variable: this.backendSecret.variable, secret: this.backendSecret.secret } }
        : {}),
    });
    const fns = this.functions.byName;

    this.runQueue = new RunQueue(this, "RunQueue", {
      consumerTimeout: Duration.minutes(settings.consumerTimeoutMinutes),
    });
    this.runQueue.bindProducer(fns.enqueue);
    this.runQueue.bindConsumer(fns.queue, settings.queueBatchSize);
    if (settings.pool.size > 0) {
      // A start that takes a pooled kernel asks for a refill through the queue; the reaper fills directly.
      for (const name of KERNEL_STARTERS) this.runQueue.bindProducer(fns[name]);
    }

    // HTTP APIs cannot stream: streamed runs go to their own function, behind an IAM Function URL.
    this.streamUrl = fns.stream.function.addFunctionUrl({
      authType: FunctionUrlAuthType.AWS_IAM,
      invokeMode: InvokeMode.RESPONSE_STREAM,
    });
    this.api = new KernelApi(this, "Http", {
      functionOf: (name) => fns[name].function,
      authorizer: settings.authorizer,
      throttle: settings.throttle,
      logRetention: settings.logRetention,
    });
    this.reaper = new ReaperSchedule(this, "Reaper", {
      reaper: fns.reaper,
      rateMinutes: settings.reaperRateMinutes,
    });

    this.monitoring = new Monitoring(this, "Monitoring", {
      functions: fns,
      api: this.api.api,
      deadLetters: this.runQueue.deadLetters,
      pooled: settings.pool.size > 0,
      ...(settings.alarmEmail ? { alarmEmail: settings.alarmEmail } : {}),
    });

    const auth = settings.cluster?.auth;
    if (auth?.kind === "eks" && auth.kubernetesGroup) {
      // Map each function that talks to the cluster into it, as members of the operator's group
      // (whose RBAC Role grants the Kernel resources); needs the cluster's API authentication mode.
      for (const name of FUNCTION_NAMES) {
        if (FUNCTIONS[name].runtime !== "kernels") continue;
        const fn = fns[name];
        new CfnAccessEntry(this, `ClusterAccess${fn.node.id}`, {
          clusterName: auth.cluster,
          principalArn: fn.role.roleArn,
          kubernetesGroups: [auth.kubernetesGroup],
          type: "STANDARD",
        });
      }
    }

    new CfnOutput(this, "ApiUrl", { value: this.api.url, description: "Base URL of the HTTP API" });
    new CfnOutput(this, "QueueUrl", { value: this.runQueue.queue.queueUrl, description: "The run queue" });
    new CfnOutput(this, "DeadLetterQueueUrl", {
      value: this.runQueue.deadLetters.queueUrl,
      description: "Queued runs that could not be run",
    });
    new CfnOutput(this, "StreamUrl", {
      value: this.streamUrl.url,
      description:
        "Streamed runs: POST <url>kernels/{kernelId}/run with Accept: text/event-stream, SigV4-signed for lambda",
    });
    new CfnOutput(this, "DashboardName", {
      value: this.monitoring.dashboard.dashboardName,
      description: "The CloudWatch dashboard of the service",
    });
    if (this.monitoring.topic) {
      new CfnOutput(this, "AlarmTopicArn", {
        value: this.monitoring.topic.topicArn,
        description: "Alarms are sent here (confirm the email subscription)",
      });
    }
    new CfnOutput(this, "TableName", {
      value: this.kernels.table.tableName,
      description: "The DynamoDB table",
    });
    const [securityGroup] = this.functions.securityGroups;
    if (securityGroup && !settings.vpc?.securityGroupIds) {
      new CfnOutput(this, "FunctionsSecurityGroupId", {
        value: securityGroup.securityGroupId,
        description: "Allow this group into the gateway's or the kernel pods' security group",
      });
    }
    if (this.backendSecret) {
      new CfnOutput(this, "BackendSecretArn", {
        value: this.backendSecret.secret.secretArn,
        description: this.backendSecret.created
          ? "Put the Enterprise Gateway token in this secret"
          : "The backend credentials secret the functions read",
      });
    }
  }
}

/**
 * The gateway URL from context, or else a `GatewayUrl` parameter the deploy must be given: a
 * plain `cdk synth` works from a clean clone, and no stack is ever deployed with a placeholder.
 */
function withGatewayUrl(stack: Stack, settings: Settings): Settings {
  if (!settings.gateway || settings.gateway.url) return settings;
  const url = new CfnParameter(stack, "GatewayUrl", {
    type: "String",
    description: "Base URL of the Jupyter Enterprise Gateway, e.g. https://eg.internal:8888",
    allowedPattern: "^https?://\\S+$",
    constraintDescription: "must be an http(s) URL",
  });
  return { ...settings, gateway: { ...settings.gateway, url: url.valueAsString } };
}
