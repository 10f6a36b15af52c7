import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { loadConfig } from "../../lib/config.ts";
import { httpHandlers } from "../../lib/dev/local-stack.ts";
import { type DevServer, startDevServer } from "../../lib/dev/server.ts";
import { buildOpenApiDocument } from "../../lib/http/openapi.ts";
import type { Runtime } from "../../lib/runtime.ts";
import { GATEWAY_CONTEXT, type Synthesized, synthesize } from "./harness.ts";

/**
 * A runtime every service of which throws: each probe below is refused at the edge, so reaching a
 * service would mean a route served something it should have refused.
 */
function untouchableRuntime(): Runtime {
  const config = loadConfig({ PYBOX_STATE_DIR: "/nonexistent/pybox-routes-test" });
  return new Proxy({ config } as Runtime, {
    get: (target, key) => {
      if (key === "config") return target.config;
      throw new Error(`the runtime's ${String(key)} was used`);
    },
  });
}

/** A request the route's edge refuses with 400 (bad id, or a body with an unknown field). */
function refusedRequest(routeKey: string): { method: string; path: string; body?: string } {
  const [method = "", path = ""] = routeKey.split(" ");
  const concrete = path.replace(/\{(\w+)\+?\}/g, "-bad-id");
  return method === "POST" && !path.includes("{")
    ? { method, path: concrete, body: JSON.stringify({ unknownField: true }) }
    : { method, path: concrete, ...(method === "POST" ? { body: '{"code":"1"}' } : {}) };
}

describe("routes", () => {
  let stack: Synthesized;
  let server: DevServer;

  before(async () => {
    stack = synthesize(GATEWAY_CONTEXT);
    server = await startDevServer(httpHandlers(untouchableRuntime()), { port: 0 });
  });

  after(async () => {
    await server?.close();
  });

  it("are the same set in the OpenAPI document, the dev server and the synthesized API", () => {
    // Arrange
    const documented = Object.entries(buildOpenApiDocument().paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    const synthesized = Object.values(stack.template.findResources("AWS::ApiGatewayV2::Route")).map((route) =>
      String(route.Properties.RouteKey),
    );

    // Assess: OpenAPI spells API Gateway's greedy `{path+}` as `{path}`.
    const asDocumented = (keys: readonly string[]) =>
      keys.map((key) => key.replace("{path+}", "{path}")).sort();
    assert.ok(documented.length >= 6);
    assert.deepEqual(asDocumented(server.routeKeys), [...documented].sort());
    assert.deepEqual(asDocumented(synthesized), [...documented].sort());
  });

  it("are each served by the dev server, and nothing else is", async () => {
    for (const routeKey of server.routeKeys) {
      // Arrange
      const { method, path, body } = refusedRequest(routeKey);

      // Act
      const response = await fetch(`${server.url}${path}`, { method, ...(body ? { body } : {}) });

      // Assess: the route's own edge validation answered, not "no route" (404) or 405.
      assert.equal(response.status, 400, `${routeKey}: ${await response.text()}`);
    }
    const unknown = await fetch(`${server.url}/kernels/a/unknown`);
    assert.equal(unknown.status, 404);
  });
});
