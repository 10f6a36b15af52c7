import * as z from "zod";
import { UnauthenticatedError } from "../errors.ts";

const Principal = z.string().trim().min(1).max(1_024);

const AuthorizerSchema = z
  .object({
    jwt: z.object({ claims: z.object({ sub: Principal }) }).optional(),
    iam: z.object({ userArn: Principal }).optional(),
    lambda: z
      .object({ owner: Principal.optional(), principalId: Principal.optional(), sub: Principal.optional() })
      .optional(),
  })
  .optional();

/**
 * The caller, from the API Gateway authorizer context only: a JWT's `sub`, an IAM caller's ARN,
 * or a Lambda authorizer's `owner`/`principalId`/`sub`. Never from a header or the body, which a
 * caller controls.
 */
export function callerOf(requestContext: unknown): string {
  const parsed = z.object({ authorizer: AuthorizerSchema }).safeParse(requestContext);
  const authorizer = parsed.success ? parsed.data.authorizer : undefined;
  const owner =
    authorizer?.jwt?.claims.sub ??
    authorizer?.iam?.userArn ??
    authorizer?.lambda?.owner ??
    authorizer?.lambda?.principalId ??
    authorizer?.lambda?.sub;
  if (!owner) throw new UnauthenticatedError("no caller identity in the request");
  return owner;
}
