import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import type { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { ServerConnection } from "@jupyterlab/services";
import { WebSocketServer } from "ws";
import { gatewaySettings, translateGatewayError } from "../../../lib/backends/gateway/api.ts";
import { gatewayBackendFrom } from "../../../lib/backends/gateway/from-config.ts";
import { gatewayTokenLoader } from "../../../lib/backends/gateway/token.ts";
import { kernelUsername } from "../../../lib/backends/kernel-username.ts";
import { type GatewayConfig, loadConfig } from "../../../lib/config.ts";
import {
  BackendError,
  BackendUnavailableError,
  ConfigError,
  CredentialsRejectedError,
  KernelDiedError,
  NotFoundError,
  type PyboxError,
} from "../../../lib/errors.ts";

/** What a gateway puts in an error body's `traceback`: must never reach one of our messages. */
const TRACEBACK =
  'Traceback (most recent call last):\n  File "/opt/eg/handlers.py", line 42\nSecretInternalError';

/** A `ResponseError` as `@jupyterlab/services` raises it for a gateway's answer with this status. */
function responseError(status: number, reason = "Reason", message = "gateway message"): Error {
  const response = new Response(JSON.stringify({ reason, message, traceback: TRACEBACK }), { status });
  return new ServerConnection.ResponseError(response, message, TRACEBACK);
}

/** Asserts that no part of the gateway's traceback is in the error's message. */
function assertNoTraceback(error: PyboxError): void {
  assert.doesNotMatch(error.message, /Traceback|SecretInternalError|handlers\.py|\/opt\/eg/);
}

const GATEWAY: GatewayConfig = {
  url: "http://gateway.invalid:8888",
  kernelName: "python3",
  requestTimeoutMs: 1_000,
  createCwd: false,
  sharedHost: "refuse",
};

/** A stand-in for the Secrets Manager client: answers every `send` with `answer()` and counts the calls. */
function secretsStub(answer: () => Promise<{ SecretString?: string }>) {
  const stub = {
    sends: 0,
    secretIds: [] as unknown[],
    send: async (command: { input?: { SecretId?: unknown } }) => {
      stub.sends++;
      stub.secretIds.push(command.input?.SecretId);
      return answer();
    },
  };
  return { stub, client: stub as unknown as SecretsManagerClient };
}

describe("gateway backend", () => {
  describe("kernelUsername", () => {
    it("keeps `<username>-<uuid>` a valid Kubernetes name of at most 63 characters, starting with a letter", () => {
      // Prepare
      const owners = [
        "0b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8",
        "arn:aws:sts::123456789012:assumed-role/AgentRole/session-name-that-is-long",
        "42",
        "Alice",
        "---",
      ];

      for (const owner of owners) {
        // Act
        const name = `${kernelUsername(owner)}-0b1c2d3e-4f50-4a61-8b72-93a4b5c6d7e8`;

        // Assess
        assert.ok(name.length <= 63, `${name} is ${name.length} long`);
        assert.match(name, /^[a-z]([-a-z0-9]*[a-z0-9])?$/);
      }
    });

    const owners = [
      "alice",
      "Alice@Example.COM",
      "arn:aws:iam::123456789012:user/Some.User",
      "--leading-and-trailing--",
      "ünïcödé ñame",
      "x".repeat(300),
      `${"a".repeat(39)}@b`,
      "auth0|5f7c8ec7c33c6c004bbafe82",
    ];

    for (const owner of owners) {
      it(`gives a lowercase [a-z0-9-] name of at most 49 chars ending in an 8-hex hash for ${JSON.stringify(owner.slice(0, 30))}`, () => {
        // Act
        const name = kernelUsername(owner);

        // Assess
        assert.match(name, /^[a-z0-9-]+$/);
        assert.match(name, /-[0-9a-f]{8}$/);
        assert.ok(!name.startsWith("-"), name);
        assert.ok(!name.endsWith("-"), name);
        assert.ok(name.length <= 49, `${name} has ${name.length} chars`);
      });
    }

    it("keeps the readable part of a simple owner", () => {
      // Act
      const name = kernelUsername("Alice@Example.COM");

      // Assess
      assert.match(name, /^alice-example-com-[0-9a-f]{8}$/);
    });

    it("gives different names to owners that sanitise to the same slug", () => {
      // Act
      const first = kernelUsername("Alice@x");
      const second = kernelUsername("alice-x");

      // Assess
      assert.equal(first.slice(0, -9), second.slice(0, -9));
      assert.notEqual(first, second);
    });

    it("gives different names to long owners that differ only after the slug is cut", () => {
      // Act
      const first = kernelUsername(`${"a".repeat(60)}1`);
      const second = kernelUsername(`${"a".repeat(60)}2`);

      // Assess
      assert.notEqual(first, second);
    });

    it("is deterministic", () => {
      // Act
      const names = [kernelUsername("bob@corp"), kernelUsername("bob@corp")];

      // Assess
      assert.equal(names[0], names[1]);
    });

    it("names an owner of only symbols caller-<hash>", () => {
      // Act
      const name = kernelUsername("@@!!//");

      // Assess
      assert.match(name, /^caller-[0-9a-f]{8}$/);
      assert.notEqual(name, kernelUsername("##"));
    });
  });

  describe("the gateway websocket", () => {
    it("answers every frame the gateway sends with a pong, so Nagle on the server never waits for our delayed ACK", async () => {
      // Prepare
      const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
      await once(server, "listening");
      const { port } = server.address() as AddressInfo;
      const pongs: number[] = [];
      server.on("connection", (peer) => {
        peer.on("pong", () => pongs.push(Date.now()));
        for (const n of [1, 2, 3]) peer.send(JSON.stringify({ n }));
      });
      const settings = gatewaySettings(`http://127.0.0.1:${port}`, "secret", 5_000);

      // Act
      const socket = new settings.WebSocket(`ws://127.0.0.1:${port}/api/kernels/k/channels`);
      const deadline = Date.now() + 5_000;
      while (pongs.length < 3 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 10));

      // Assess
      assert.equal(pongs.length, 3, "one pong for each of the three frames");
      socket.close();
      await new Promise((resolve) => server.close(resolve));
    });
  });

  describe("sharedHost: whether the kernelspec's kernels share the gateway's host", () => {
    /** A gateway that lists one kernelspec `python3` with `metadata`, on a free loopback port. */
    async function listing(metadata: unknown): Promise<{ url: string; close: () => void }> {
      const server = createServer((_req, res) => {
        res.setHeader("content-type", "application/json");
        res.end(
          JSON.stringify({
            default: "python3",
            kernelspecs: {
              python3: {
                name: "python3",
                resources: {},
                spec: { argv: [], display_name: "Python 3", language: "python", metadata },
              },
            },
          }),
        );
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        close: () => server.close(),
      };
    }

    for (const [metadata, shared] of [
      [undefined, true],
      [
        {
          process_proxy: {
            class_name: "enterprise_gateway.services.processproxies.processproxy.LocalProcessProxy",
          },
        },
        true,
      ],
      [
        {
          process_proxy: {
            class_name: "enterprise_gateway.services.processproxies.distributed.DistributedProcessProxy",
          },
        },
        true,
      ],
      [
        {
          process_proxy: {
            class_name: "enterprise_gateway.services.processproxies.k8s.KubernetesProcessProxy",
          },
        },
        false,
      ],
      [
        {
          process_proxy: {
            class_name: "enterprise_gateway.services.processproxies.docker_swarm.DockerProcessProxy",
          },
        },
        false,
      ],
      [
        {
          process_proxy: {
            class_name: "enterprise_gateway.services.processproxies.crd.CustomResourceProcessProxy",
          },
        },
        false,
      ],
    ] as const) {
      it(`calls ${metadata?.process_proxy.class_name.split(".").at(-1) ?? "no process proxy"} ${shared ? "shared" : "isolated"}`, async () => {
        const gateway = await listing(metadata);
        try {
          const backend = gatewayBackendFrom({
            ...loadConfig({ PYBOX_BACKEND: "gateway", PYBOX_GATEWAY_URL: gateway.url }),
          });
          const reason = await backend.sharedHost?.();
          assert.equal(reason !== undefined, shared, String(reason));
          if (shared) assert.match(String(reason), /kernelspec 'python3'/);
        } finally {
          gateway.close();
        }
      });
    }
  });

  describe("translateGatewayError", () => {
    it("turns a 404 into KernelDiedError", () => {
      // Act
      const error = translateGatewayError(
        responseError(404, "Not Found", "Kernel does not exist"),
        "run code",
      );

      // Assess
      assert.ok(error instanceof KernelDiedError, String(error));
      assert.equal(error.code, "KERNEL_DEAD");
      assertNoTraceback(error);
    });

    it("turns a 401 into CredentialsRejectedError (a 502) saying the gateway rejected our credentials", () => {
      // Act
      const error = translateGatewayError(
        responseError(401, "Unauthorized", "Invalid auth token"),
        "start a kernel",
      );

      // Assess
      assert.ok(error instanceof CredentialsRejectedError, String(error));
      assert.equal(error.code, "BACKEND_ERROR");
      assert.match(error.message, /rejected our credentials/);
      assertNoTraceback(error);
    });

    it("turns a 403 on an existing kernel into BackendError, not capacity (only a start's 403 is a limit)", () => {
      // Act
      const error = translateGatewayError(
        responseError(403, "Forbidden", "Resource Limit"),
        "interrupt a kernel",
      );

      // Assess
      assert.ok(error instanceof BackendError, String(error));
      assert.equal(error.code, "BACKEND_ERROR");
      assert.equal(error.expose, false);
      assertNoTraceback(error);
    });

    it("turns a 503 into BackendUnavailableError", () => {
      // Act
      const error = translateGatewayError(responseError(503, "Service Unavailable"), "start a kernel");

      // Assess
      assert.ok(error instanceof BackendUnavailableError, String(error));
      assert.equal(error.code, "BACKEND_UNAVAILABLE");
      assertNoTraceback(error);
    });

    it("turns a 500 into BackendError", () => {
      // Act
      const error = translateGatewayError(
        responseError(500, "Internal Server Error", "Unknown server error"),
        "start a kernel",
      );

      // Assess
      assert.ok(error instanceof BackendError, String(error));
      assert.equal(error.code, "BACKEND_ERROR");
      assert.equal(error.expose, false);
      assertNoTraceback(error);
    });

    it("turns a network failure into BackendUnavailableError with a retry delay", () => {
      // Act
      const error = translateGatewayError(new TypeError("fetch failed"), "start a kernel");

      // Assess
      assert.ok(error instanceof BackendUnavailableError, String(error));
      assert.ok((error.retryAfterSeconds ?? 0) > 0);
      assert.doesNotMatch(error.message, /fetch failed/);
    });

    it("passes a PyboxError through unchanged", () => {
      // Prepare
      const original = new NotFoundError("no kernel 'k1'");

      // Act
      const error = translateGatewayError(original, "run code");

      // Assess
      assert.equal(error, original);
    });
  });

  describe("gatewayTokenLoader", () => {
    it("returns the configured token as is", async () => {
      // Prepare
      const { stub, client } = secretsStub(async () => ({ SecretString: "from-secret" }));
      const load = gatewayTokenLoader({ ...GATEWAY, token: " t0ken " }, client);

      // Act
      const token = await load();

      // Assess
      assert.equal(token, " t0ken ");
      assert.equal(stub.sends, 0);
    });

    it("gives undefined without a token or a secret", async () => {
      // Prepare
      const { stub, client } = secretsStub(async () => ({ SecretString: "from-secret" }));
      const load = gatewayTokenLoader(GATEWAY, client);

      // Act
      const token = await load();

      // Assess
      assert.equal(token, undefined);
      assert.equal(stub.sends, 0);
    });

    it("reads a plain string secret", async () => {
      // Prepare
      const { stub, client } = secretsStub(async () => ({ SecretString: "plain-token" }));
      const load = gatewayTokenLoader({ ...GATEWAY, tokenSecret: "pybox/gateway" }, client);

      // Act
      const token = await load();

      // Assess
      assert.equal(token, "plain-token");
      assert.deepEqual(stub.secretIds, ["pybox/gateway"]);
    });

    it("reads the token field of a JSON secret", async () => {
      // Prepare
      const { client } = secretsStub(async () => ({ SecretString: JSON.stringify({ token: "t" }) }));
      const load = gatewayTokenLoader({ ...GATEWAY, tokenSecret: "pybox/gateway" }, client);

      // Act
      const token = await load();

      // Assess
      assert.equal(token, "t");
    });

    it("reads the secret only once for several calls", async () => {
      // Prepare
      const { stub, client } = secretsStub(async () => ({ SecretString: "once" }));
      const load = gatewayTokenLoader({ ...GATEWAY, tokenSecret: "pybox/gateway" }, client);

      // Act
      const tokens = await Promise.all([load(), load()]);
      tokens.push(await load());

      // Assess
      assert.deepEqual(tokens, ["once", "once", "once"]);
      assert.equal(stub.sends, 1);
    });

    it("fails with BackendUnavailableError when the secret cannot be read, and retries on the next call", async () => {
      // Prepare
      let fail = true;
      const { stub, client } = secretsStub(async () => {
        if (fail) throw new Error("AccessDeniedException: arn:aws:secretsmanager:eu-west-1:123:secret:x");
        return { SecretString: "recovered" };
      });
      const load = gatewayTokenLoader({ ...GATEWAY, tokenSecret: "pybox/gateway" }, client);

      // Act
      const first = await load().then(
        () => undefined,
        (error: unknown) => error,
      );
      fail = false;
      const second = await load();

      // Assess
      assert.ok(first instanceof BackendUnavailableError, String(first));
      assert.doesNotMatch(first.message, /arn:aws|AccessDenied/);
      assert.equal(second, "recovered");
      assert.equal(stub.sends, 2);
    });

    it("fails with ConfigError when the secret has no string value", async () => {
      // Prepare
      const { client } = secretsStub(async () => ({ SecretString: "" }));
      const load = gatewayTokenLoader({ ...GATEWAY, tokenSecret: "pybox/gateway" }, client);

      // Act
      const attempt = load();

      // Assess
      await assert.rejects(attempt, ConfigError);
    });
  });
});
