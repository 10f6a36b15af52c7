import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HostSharedError } from "../../../lib/errors.ts";
import { HostTenancy, type TenancyRecords } from "../../../lib/sandbox/host-tenancy.ts";

/** The tenancy item in memory, with the real store's rule: the first caller, then only it. */
function tenantRecords(): TenancyRecords & { tenant: () => string | undefined; claims: () => number } {
  let tenant: string | undefined;
  let claims = 0;
  return {
    async claim(_backend, owner) {
      claims++;
      tenant ??= owner;
      return tenant === owner;
    },
    tenant: () => tenant,
    claims: () => claims,
  };
}

/** A backend that says its callers share a host (`reason`), or not (undefined); counts the asks. */
function backend(reason: string | undefined) {
  let asks = 0;
  return {
    name: "gateway" as const,
    sharedHost: async () => {
      asks++;
      return reason;
    },
    asks: () => asks,
  };
}

describe("HostTenancy", () => {
  it("serves the first caller of a shared host and refuses the next with HOST_SHARED, saying why and what to do", async () => {
    const records = tenantRecords();
    const tenancy = new HostTenancy(records, backend("the gateway runs kernels as processes"), "refuse");

    await tenancy.admit("alice");
    await tenancy.admit("alice");
    const refused = await tenancy.admit("bob").catch((error: unknown) => error);

    assert.ok(refused instanceof HostSharedError);
    assert.match(refused.message, /serves one caller only: the gateway runs kernels as processes/);
    assert.match(refused.message, /PYBOX_GATEWAY_SHARED_HOST=allow/);
    assert.doesNotMatch(refused.message, /alice/);
    assert.equal(records.tenant(), "alice");
    assert.equal(records.claims(), 2, "an admitted caller is not claimed again in this process");
  });

  it("lets every caller in where the operator allowed sharing, writing no tenant", async () => {
    const records = tenantRecords();
    const tenancy = new HostTenancy(records, backend("shared"), "allow");

    await tenancy.admit("alice");
    await tenancy.admit("bob");

    assert.equal(records.tenant(), undefined);
  });

  it("lets every caller in where each kernel is isolated, asking the backend once", async () => {
    const records = tenantRecords();
    const isolated = backend(undefined);
    const tenancy = new HostTenancy(records, isolated, "refuse");

    await Promise.all(["alice", "bob", "carol"].map((owner) => tenancy.admit(owner)));

    assert.equal(records.claims(), 0);
    assert.equal(isolated.asks(), 1);
  });

  it("asks again after a failed ask, refusing nobody for the backend's failure", async () => {
    let fail = true;
    const flaky = {
      name: "gateway" as const,
      sharedHost: async () => {
        if (fail) throw new Error("gateway unreachable");
        return undefined;
      },
    };
    const tenancy = new HostTenancy(tenantRecords(), flaky, "refuse");

    await assert.rejects(tenancy.admit("alice"), /gateway unreachable/);
    fail = false;
    await tenancy.admit("alice");
  });
});
