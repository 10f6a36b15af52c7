import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { describe, it } from "node:test";
import { NODE_ABI, NODE_MAJOR, PROJECT_ROOT } from "../../infra/bundling.ts";

describe("the tests' Node", () => {
  it("is the Lambda runtime's major version, whatever Node the machine has", () => {
    // Act
    const major = Number(process.versions.node.split(".")[0]);

    // Assess
    assert.equal(
      major,
      NODE_MAJOR,
      `npm test runs on ${process.version}; the functions run on nodejs${NODE_MAJOR}.x`,
    );
  });

  it("loads the zeromq addon the bundles ship (the N-API build of ABI NODE_ABI)", () => {
    // Arrange
    const loaded: string[] = [];
    const dlopen = process.dlopen;
    process.dlopen = (module, filename, ...rest) => {
      loaded.push(filename);
      return dlopen.call(process, module, filename, ...rest);
    };

    // Act
    try {
      const zeromq = createRequire(`${PROJECT_ROOT}/`)("zeromq") as { Dealer: unknown };
      assert.equal(typeof zeromq.Dealer, "function");
    } finally {
      process.dlopen = dlopen;
    }

    // Assess: either this process loaded it now, or an earlier test file in it already had.
    for (const file of loaded) assert.match(file, new RegExp(`glibc-${NODE_ABI}-Release/addon\\.node$`));
  });
});
