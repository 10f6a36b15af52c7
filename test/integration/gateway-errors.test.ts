import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, realpath, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { kernelUsername } from "../../lib/backends/kernel-username.ts";
import { SYNC_START_LIMIT_MS } from "../../lib/config.ts";
import type { ApiClient, ApiResponse } from "../support/api.ts";
import { freePort } from "../support/free-port.ts";
import { GATEWAY_CLIENT_ENVS, type RunningGateway, startGateway } from "../support/gateway.ts";
import { type LocalApi, startLocalApi } from "../support/local-api.ts";

/** The error body every failed request of our API has. */
interface ErrorBody {
  error: { code: string; message: string; details?: Array<{ path: string; message: string }> };
}

/** A canonical lowercase UUID v4, as Enterprise Gateway requires of `KERNEL_ID`. */
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The operator's kernel env set on the API (`PYBOX_KERNEL_ENV`); TEAM is in the gateway's `client_envs`. */
const OPERATOR_ENV = { TEAM: "ops" };

/** Asserts an answer carries no Python traceback, no stack and none of the given secrets. */
function assertNothingLeaked(res: ApiResponse<unknown>, secrets: readonly string[] = []): void {
  assert.doesNotMatch(res.text, /Traceback|File "|\.py", line|at .+\(.+:\d+:\d+\)/);
  for (const secret of secrets)
    assert.ok(!res.text.includes(secret), `the answer contains a secret: ${res.text}`);
}

/** The error part of a failed answer. */
function errorOf(res: ApiResponse<unknown>): ErrorBody["error"] {
  return (res.body as unknown as ErrorBody).error;
}

/** Runs code that prints one line and gives that line. */
async function printed(api: ApiClient, kernelId: string, code: string): Promise<string> {
  return (await api.eval(kernelId, code)).trim();
}

/** Starts the dev API in front of `gatewayUrl` with the gateway backend. */
function startApiFor(
  gatewayUrl: string,
  token: string,
  extra: Record<string, string> = {},
): Promise<LocalApi> {
  return startLocalApi({
    PYBOX_BACKEND: "gateway",
    PYBOX_GATEWAY_URL: gatewayUrl,
    PYBOX_GATEWAY_TOKEN: token,
    ...extra,
  });
}

/** What the recording double saw of one request. */
interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

/**
 * A recording double of Enterprise Gateway's `POST /api/kernels`: it records every request and
 * refuses every kernel with EG's 403 error shape (`{"reason":"Forbidden","message":"recorded"}`),
 * so the test can see exactly what our backend sends without any kernel being made.
 */
async function startRecordingGatewayDouble(): Promise<{
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}> {
  const requests: RecordedRequest[] = [];
  const server: Server = createServer((req, res) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      text += chunk;
    });
    req.on("end", () => {
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        // kept as text
      }
      const url = req.url ?? "";
      requests.push({ method: req.method ?? "", url, headers: req.headers, body });
      // The client may append a cache-busting query string; only the path names the endpoint.
      const refused = req.method === "POST" && new URL(url, "http://double").pathname === "/api/kernels";
      res.writeHead(refused ? 403 : 404, { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          refused ? { reason: "Forbidden", message: "recorded" } : { reason: "Not Found", message: "" },
        ),
      );
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe("gateway backend against a real Enterprise Gateway: errors and what we send", {
  timeout: 600_000,
}, () => {
  describe("a per-user kernel quota on the gateway", () => {
    let gateway: RunningGateway | undefined;
    let server: LocalApi | undefined;
    let api: ApiClient;

    before(async () => {
      gateway = await startGateway("enterprise", ["--EnterpriseGatewayApp.max_kernels_per_user=1"]);
      server = await startApiFor(gateway.url, gateway.token);
      api = server.api.as("quota-user");
    });

    after(async () => {
      await server?.stop();
      await gateway?.stop();
    });

    it("starts the caller's first kernel", async () => {
      // Act
      const res = await api.start({ kernelId: "first" });

      // Assess
      assert.equal(res.status, 201, res.text);
    });

    it("answers 429 CAPACITY with Retry-After and the gateway's reason for a second kernel", async () => {
      // Act
      const res = await api.start({ kernelId: "second" });

      // Assess
      assert.equal(res.status, 429, res.text);
      const error = errorOf(res);
      assert.equal(error.code, "CAPACITY");
      // EG's own sentence, not our generic fallback ("resource limits reached").
      assert.match(error.message, /max kernels per user limit has been set to 1/);
      assert.match(res.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
      assertNothingLeaked(res, [gateway?.token ?? "", gateway?.url ?? ""]);
    });

    it("keeps no record of the refused kernel", async () => {
      // Act
      const res = await api.get("second");

      // Assess
      assert.equal(res.status, 404, res.text);
    });

    it("leaves the first kernel running code", async () => {
      // Act
      const out = await api.eval("first", "1 + 1");

      // Assess
      assert.equal(out, "2");
    });
  });

  describe("with the default gateway", () => {
    let gateway: RunningGateway | undefined;

    before(async () => {
      gateway = await startGateway("enterprise");
    });

    after(async () => {
      await gateway?.stop();
    });

    /** The running gateway (set by `before`). */
    const eg = (): RunningGateway => {
      assert.ok(gateway, "the gateway did not start");
      return gateway;
    };

    describe("a wrong gateway token", () => {
      const wrongToken = `wrong-${randomBytes(12).toString("hex")}`;
      let server: LocalApi | undefined;

      before(async () => {
        server = await startApiFor(eg().url, wrongToken);
      });

      after(async () => {
        await server?.stop();
      });

      it("answers 502 BACKEND_ERROR without the token or a traceback", async () => {
        // Prepare
        assert.ok(server);

        // Act
        const res = await server.api.as("token-user").start({ kernelId: "k" });

        // Assess
        assert.equal(res.status, 502, res.text);
        assert.equal(errorOf(res).code, "BACKEND_ERROR");
        assertNothingLeaked(res, [wrongToken, eg().token, eg().url]);
      });

      it("does not log the token", () => {
        // Assess
        assert.ok(server);
        assert.ok(!server.output().includes(wrongToken), "the server's log contains the gateway token");
      });
    });

    describe("our API and the gateway's own kernels", () => {
      let server: LocalApi | undefined;
      let workDir: string | undefined;

      before(async () => {
        workDir = await realpath(await mkdtemp(join(tmpdir(), "pybox-eg-cwd-")));
        server = await startApiFor(eg().url, eg().token, { PYBOX_KERNEL_ENV: JSON.stringify(OPERATOR_ENV) });
      });

      after(async () => {
        await server?.stop();
        if (workDir) await rm(workDir, { recursive: true, force: true });
      });

      const apiAs = (caller: string): ApiClient => {
        assert.ok(server, "the API did not start");
        return server.api.as(caller);
      };

      describe("a kernel deleted on the gateway behind our back", () => {
        const kernelId = "doomed";
        let gatewayKernelId = "";

        before(async () => {
          const api = apiAs("carol");
          const started = await api.start({ kernelId });
          assert.equal(started.status, 201, started.text);
          gatewayKernelId = await printed(api, kernelId, "import os; print(os.environ['KERNEL_ID'])");
          const deleted = await fetch(`${eg().url}/api/kernels/${gatewayKernelId}`, {
            method: "DELETE",
            headers: { Authorization: `token ${eg().token}` },
          });
          assert.equal(deleted.status, 204, await deleted.text());
        });

        it("is reported dead", async () => {
          // Act
          const res = await apiAs("carol").get(kernelId);

          // Assess
          assert.equal(res.status, 200, res.text);
          assert.equal(res.body.state, "dead");
        });

        it("refuses a run with 409 KERNEL_DEAD", async () => {
          // Act
          const res = await apiAs("carol").run(kernelId, "1 + 1");

          // Assess
          assert.equal(res.status, 409, res.text);
          assert.equal(errorOf(res).code, "KERNEL_DEAD");
        });

        it("starts again with restarted true, as a new gateway kernel that runs code", async () => {
          // Prepare
          const api = apiAs("carol");

          // Act
          const res = await api.start({ kernelId });

          // Assess
          assert.equal(res.status, 201, res.text);
          assert.equal(res.body.restarted, true);
          assert.equal(await api.eval(kernelId, "20 + 22"), "42");
          const newId = await printed(api, kernelId, "import os; print(os.environ['KERNEL_ID'])");
          assert.match(newId, UUID_V4);
          assert.notEqual(newId, gatewayKernelId);
        });
      });

      describe("what reaches the kernel", () => {
        const caller = "Dave.Smith@Example.com";
        const kernelId = "env-check";
        let seen: Record<string, string | null> = {};
        let cwd = "";

        before(async () => {
          assert.ok(GATEWAY_CLIENT_ENVS.includes("PROJECT") && GATEWAY_CLIENT_ENVS.includes("TEAM"));
          const api = apiAs(caller);
          const started = await api.start({
            kernelId,
            cwd: workDir,
            env: { PROJECT: "apollo", TEAM: "caller-team" },
          });
          assert.equal(started.status, 201, started.text);
          const names = ["KERNEL_USERNAME", "KERNEL_ID", "KERNEL_WORKING_DIR", "PROJECT", "TEAM"];
          seen = JSON.parse(
            await printed(
              api,
              kernelId,
              `import os, json; print(json.dumps({k: os.environ.get(k) for k in ${JSON.stringify(names)}}))`,
            ),
          ) as Record<string, string | null>;
          cwd = await printed(api, kernelId, "import os; print(os.getcwd())");
        });

        it("gives the caller as a sanitised KERNEL_USERNAME", () => {
          // Assess
          assert.equal(seen.KERNEL_USERNAME, kernelUsername(caller));
          assert.match(seen.KERNEL_USERNAME ?? "", /^[a-z0-9-]+$/);
        });

        it("gives a lowercase UUID v4 as KERNEL_ID", () => {
          // Assess
          assert.match(seen.KERNEL_ID ?? "", UUID_V4);
        });

        it("passes the caller's allowed env", () => {
          // Assess
          assert.equal(seen.PROJECT, "apollo");
        });

        it("passes the operator env, which wins over the caller's", () => {
          // Assess
          assert.equal(seen.TEAM, OPERATOR_ENV.TEAM);
        });

        it("runs the kernel in the caller's cwd (KERNEL_WORKING_DIR)", () => {
          // Assess
          assert.equal(seen.KERNEL_WORKING_DIR, workDir);
          assert.equal(cwd, workDir);
        });

        it("refuses a caller env with KERNEL_IMAGE with 400 before any kernel is made", async () => {
          // Prepare
          const api = apiAs(caller);

          // Act
          const res = await api.start({ kernelId: "image-pick", env: { KERNEL_IMAGE: "evil/image:latest" } });

          // Assess
          assert.equal(res.status, 400, res.text);
          const error = errorOf(res);
          assert.equal(error.code, "INVALID_REQUEST");
          assert.ok(
            error.details?.some((detail) => detail.path.includes("KERNEL_IMAGE")),
            `details do not name KERNEL_IMAGE: ${res.text}`,
          );
          assert.equal((await api.get("image-pick")).status, 404);
        });
      });
    });
  });

  describe("a gateway that is down", () => {
    let server: LocalApi | undefined;
    let downUrl = "";

    before(async () => {
      downUrl = `http://127.0.0.1:${await freePort()}`;
      server = await startApiFor(downUrl, "unused-token");
    });

    after(async () => {
      await server?.stop();
    });

    it("answers 503 BACKEND_UNAVAILABLE with Retry-After", async () => {
      // Prepare
      assert.ok(server);

      // Act
      const res = await server.api.as("down-user").start({ kernelId: "k" });

      // Assess
      assert.equal(res.status, 503, res.text);
      assert.equal(errorOf(res).code, "BACKEND_UNAVAILABLE");
      assert.match(res.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
      assertNothingLeaked(res, [downUrl, "127.0.0.1", "unused-token"]);
    });
  });

  describe("what we send to the gateway (recording double of EG's POST /api/kernels)", () => {
    const token = `recorded-${randomBytes(12).toString("hex")}`;
    const caller = "erin@example.com";
    let double: Awaited<ReturnType<typeof startRecordingGatewayDouble>> | undefined;
    let server: LocalApi | undefined;

    before(async () => {
      double = await startRecordingGatewayDouble();
      server = await startApiFor(double.url, token, {
        PYBOX_KERNEL_ENV: JSON.stringify(OPERATOR_ENV),
        // Host variables that must never reach a kernel.
        AWS_SECRET_ACCESS_KEY: "host-aws-secret",
        HOST_ONLY_VARIABLE: "host-only",
      });
    });

    after(async () => {
      await server?.stop();
      await double?.close();
    });

    it("sends the kernelspec, our UUID and exactly the kernel env, with our token, and maps the 403", async () => {
      // Prepare
      assert.ok(server && double);
      double.requests.length = 0;

      // Act
      const res = await server.api
        .as(caller)
        .start({ kernelId: "recorded", cwd: "/work/x", env: { PROJECT: "p" } });

      // Assess
      assert.equal(res.status, 429, res.text);
      assert.equal(errorOf(res).code, "CAPACITY");
      assert.equal(errorOf(res).message, "recorded");
      assert.ok(res.headers.get("retry-after"));
      // Besides the kernelspec read that tells whether callers share a host, one launch.
      const launches = double.requests.filter(
        (r) => r.method !== "GET" || !r.url.startsWith("/api/kernelspecs"),
      );
      assert.equal(launches.length, 1, JSON.stringify(double.requests));
      const [request] = launches;
      assert.ok(request);
      assert.equal(request.method, "POST");
      assert.equal(new URL(request.url, "http://double").pathname, "/api/kernels");
      assert.equal(request.headers.authorization, `token ${token}`);
      const body = request.body as { kernel_id?: unknown };
      assert.equal(typeof body.kernel_id, "string");
      const id = String(body.kernel_id);
      assert.match(id, UUID_V4);
      assert.deepEqual(request.body, {
        name: "python3",
        kernel_id: id,
        env: {
          KERNEL_LAUNCH_TIMEOUT: String(SYNC_START_LIMIT_MS / 1000),
          TEAM: "ops",
          PROJECT: "p",
          KERNEL_ID: id,
          KERNEL_USERNAME: kernelUsername(caller),
          KERNEL_WORKING_DIR: "/work/x",
        },
      });
    });

    it("does not put the token in the URL", () => {
      // Assess
      assert.ok(double);
      for (const request of double.requests) assert.ok(!request.url.includes(token), request.url);
    });

    it("answers 502 BACKEND_ERROR, not KERNEL_DEAD, when the gateway has no kernels endpoint at that URL", async () => {
      // Prepare
      assert.ok(double);
      const misplaced = await startApiFor(`${double.url}/not-the-gateway`, token);
      try {
        // Act
        const res = await misplaced.api.as(caller).start({ kernelId: "misplaced" });

        // Assess
        assert.equal(res.status, 502, res.text);
        assert.equal(errorOf(res).code, "BACKEND_ERROR");
      } finally {
        await misplaced.stop();
      }
    });

    it("sends nothing to the gateway for a caller env with KERNEL_IMAGE", async () => {
      // Prepare
      assert.ok(server && double);
      double.requests.length = 0;

      // Act
      const res = await server.api
        .as(caller)
        .start({ kernelId: "image", env: { KERNEL_IMAGE: "evil:latest" } });

      // Assess
      assert.equal(res.status, 400, res.text);
      assert.equal(errorOf(res).code, "INVALID_REQUEST");
      assert.deepEqual(double.requests, []);
    });
  });
});
