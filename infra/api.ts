import { AccessLogFormat } from "aws-cdk-lib/aws-apigateway";
import {
  HttpApi,
  HttpMethod,
  type HttpStage,
  type IHttpRouteAuthorizer,
  LogGroupLogDestination,
} from "aws-cdk-lib/aws-apigatewayv2";
import { HttpIamAuthorizer, HttpJwtAuthorizer } from "aws-cdk-lib/aws-apigatewayv2-authorizers";
import { HttpLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import type { IFunction } from "aws-cdk-lib/aws-lambda";
import { LogGroup, type RetentionDays } from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";
import { ROUTES, type RouteFunction } from "../lib/http/routes.ts";
import type { AuthorizerSettings } from "./settings.ts";

/** Props of {@link KernelApi}. */
export interface KernelApiProps {
  /** The function serving each function name of the catalogue's routes. */
  functionOf: (name: RouteFunction) => IFunction;
  authorizer: AuthorizerSettings;
  throttle: { rateLimit: number; burstLimit: number };
  logRetention: RetentionDays;
}

/**
 * One access-log line per request, as JSON: who called (the IAM caller or the JWT subject), which
 * route, what came back and how long it took. Never bodies, never tokens.
 */
function accessLogFormat(authorizer: AuthorizerSettings): AccessLogFormat {
  return AccessLogFormat.custom(
    JSON.stringify({
      requestId: "$context.requestId",
      requestTime: "$context.requestTime",
      ip: "$context.identity.sourceIp",
      userAgent: "$context.identity.userAgent",
      caller: authorizer.kind === "iam" ? "$context.identity.userArn" : "$context.authorizer.claims.sub",
      routeKey: "$context.routeKey",
      status: "$context.status",
      protocol: "$context.protocol",
      responseLength: "$context.responseLength",
      responseLatency: "$context.responseLatency",
      integrationLatency: "$context.integrationLatency",
      integrationStatus: "$context.integrationStatus",
      integrationError: "$context.integrationErrorMessage",
      authorizerError: "$context.authorizer.error",
      error: "$context.error.message",
    }),
  );
}

/**
 * The HTTP API (payload format 2.0): one route per entry of the route catalogue, so the API, the dev
 * server and the OpenAPI document cannot drift apart; every route behind the one authorizer (IAM by default, or JWT); the default
 * stage throttled and logging each request as JSON.
 */
export class KernelApi extends Construct {
  readonly api: HttpApi;
  readonly stage: HttpStage;
  readonly accessLogs: LogGroup;

  constructor(scope: Construct, id: string, props: KernelApiProps) {
    super(scope, id);
    const authorizer: IHttpRouteAuthorizer =
      props.authorizer.kind === "iam"
        ? new HttpIamAuthorizer()
        : new HttpJwtAuthorizer("Jwt", props.authorizer.issuer, { jwtAudience: props.authorizer.audience });
    this.api = new HttpApi(this, "Api", {
      description: "pybox: start, run and stop IPython kernels",
      createDefaultStage: false,
      defaultAuthorizer: authorizer,
    });
    this.accessLogs = new LogGroup(this, "AccessLogs", { retention: props.logRetention });
    this.stage = this.api.addStage("DefaultStage", {
      stageName: "$default",
      autoDeploy: true,
      throttle: props.throttle,
      accessLogSettings: {
        destination: new LogGroupLogDestination(this.accessLogs),
        format: accessLogFormat(props.authorizer),
      },
    });
    const integrations = new Map<RouteFunction, HttpLambdaIntegration>();
    for (const route of ROUTES) {
      let integration = integrations.get(route.function);
      if (!integration) {
        integration = new HttpLambdaIntegration(
          `${route.function}Integration`,
          props.functionOf(route.function),
        );
        integrations.set(route.function, integration);
      }
      // `auth: "caller"` (every route today): the API's authorizer names the caller.
      const routeAuthorizer = route.auth === "caller" ? authorizer : undefined;
      this.api.addRoutes({
        path: route.path,
        methods: [HttpMethod[route.method]],
        integration,
        ...(routeAuthorizer ? { authorizer: routeAuthorizer } : {}),
      });
    }
  }

  /** The API's base URL (the default stage serves at the root). */
  get url(): string {
    return this.api.apiEndpoint;
  }
}
