import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UnauthenticatedError } from "../../../lib/errors.ts";
import { callerOf } from "../../../lib/http/identity.ts";

const JWT = { jwt: { claims: { sub: "jwt-user", iss: "https://issuer.example.com" }, scopes: null } };
const IAM = {
  iam: {
    accessKey: "AKIAEXAMPLE",
    accountId: "123456789012",
    userArn: "arn:aws:iam::123456789012:user/iam-user",
    userId: "AIDAEXAMPLE",
  },
};

/** The request context API Gateway hands a function, with `authorizer` as given. */
function requestContext(authorizer?: unknown): Record<string, unknown> {
  return {
    accountId: "123456789012",
    apiId: "api",
    requestId: "req-1",
    routeKey: "POST /kernels",
    stage: "$default",
    ...(authorizer === undefined ? {} : { authorizer }),
  };
}

function assertUnauthenticated(context: unknown): void {
  assert.throws(
    () => callerOf(context),
    (error: unknown) => {
      assert.ok(error instanceof UnauthenticatedError, `expected UnauthenticatedError, got ${String(error)}`);
      assert.equal(error.code, "UNAUTHENTICATED");
      return true;
    },
  );
}

describe("identity", () => {
  describe("callerOf", () => {
    it("takes the JWT authorizer's sub", () => {
      // Act
      const owner = callerOf(requestContext(JWT));

      // Assess
      assert.equal(owner, "jwt-user");
    });

    it("takes the IAM caller's user ARN", () => {
      // Act
      const owner = callerOf(requestContext(IAM));

      // Assess
      assert.equal(owner, "arn:aws:iam::123456789012:user/iam-user");
    });

    it("takes the Lambda authorizer's owner", () => {
      // Act
      const owner = callerOf(requestContext({ lambda: { owner: "lambda-owner" } }));

      // Assess
      assert.equal(owner, "lambda-owner");
    });

    it("takes the Lambda authorizer's principalId", () => {
      // Act
      const owner = callerOf(requestContext({ lambda: { principalId: "lambda-principal" } }));

      // Assess
      assert.equal(owner, "lambda-principal");
    });

    it("takes the Lambda authorizer's sub", () => {
      // Act
      const owner = callerOf(requestContext({ lambda: { sub: "lambda-sub" } }));

      // Assess
      assert.equal(owner, "lambda-sub");
    });

    it("ignores extra keys in the Lambda authorizer context", () => {
      // Act
      const owner = callerOf(requestContext({ lambda: { principalId: "p", tier: "gold", quota: 3 } }));

      // Assess
      assert.equal(owner, "p");
    });

    describe("precedence", () => {
      const lambda = { lambda: { owner: "l-owner", principalId: "l-principal", sub: "l-sub" } };
      const cases: ReadonlyArray<[string, Record<string, unknown>, string]> = [
        ["JWT over IAM and Lambda", { ...JWT, ...IAM, ...lambda }, "jwt-user"],
        ["IAM over Lambda", { ...IAM, ...lambda }, "arn:aws:iam::123456789012:user/iam-user"],
        ["Lambda owner over principalId and sub", lambda, "l-owner"],
        [
          "Lambda principalId over sub",
          { lambda: { principalId: "l-principal", sub: "l-sub" } },
          "l-principal",
        ],
      ];
      for (const [name, authorizer, expected] of cases) {
        it(`prefers ${name}`, () => {
          // Act
          const owner = callerOf(requestContext(authorizer));

          // Assess
          assert.equal(owner, expected);
        });
      }
    });

    it("trims whitespace around the principal", () => {
      // Act
      const owner = callerOf(requestContext({ lambda: { principalId: "  spaced  " } }));

      // Assess
      assert.equal(owner, "spaced");
    });

    describe("rejects", () => {
      const rejected: ReadonlyArray<[string, unknown]> = [
        ["a context without an authorizer", requestContext()],
        ["an empty authorizer", requestContext({})],
        ["an empty Lambda authorizer context", requestContext({ lambda: {} })],
        ["a null authorizer", requestContext(null)],
        ["an empty JWT sub", requestContext({ jwt: { claims: { sub: "" } } })],
        ["a blank JWT sub", requestContext({ jwt: { claims: { sub: "   " } } })],
        ["a JWT without sub", requestContext({ jwt: { claims: { email: "a@example.com" } } })],
        ["an empty IAM user ARN", requestContext({ iam: { userArn: "" } })],
        ["an empty principalId", requestContext({ lambda: { principalId: "" } })],
        ["a numeric principalId", requestContext({ lambda: { principalId: 42 } })],
        ["a principal longer than 1024 characters", requestContext({ lambda: { owner: "o".repeat(1_025) } })],
        ["an authorizer that is a string", requestContext("alice")],
        ["a request context that is undefined", undefined],
        ["a request context that is null", null],
        ["a request context that is a string", "alice"],
        ["a request context that is an array", [{ authorizer: { lambda: { owner: "alice" } } }]],
      ];
      for (const [name, context] of rejected) {
        it(name, () => {
          assertUnauthenticated(context);
        });
      }
    });

    it("never takes the caller from a header", () => {
      // Prepare: an event whose only claim of identity is a header the caller controls
      const event = {
        headers: { "x-owner": "mallory", "x-pybox-owner": "mallory", authorization: "Bearer forged" },
        requestContext: requestContext(),
      };

      // Act + Assess
      assertUnauthenticated(event.requestContext);
      assertUnauthenticated(event);
    });

    it("never takes the caller from headers copied into the request context", () => {
      // Act + Assess
      assertUnauthenticated({ ...requestContext(), headers: { "x-owner": "mallory" }, owner: "mallory" });
    });
  });
});
