import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type CommandResult,
  planSetup,
  provideSandboxTools,
  provideSystemPackages,
  SANDBOX_PREREQUISITES,
  type System,
  TEST_PREREQUISITES,
} from "../../../lib/dev/prerequisites.ts";

/** The tools each Debian package brings, for the fake apt-get. */
const PACKAGE_TOOLS: Record<string, string[]> = {
  "python3-venv": ["python3 -m venv"],
  "default-jre-headless": ["java"],
  maven: ["mvn"],
  bubblewrap: ["bwrap"],
  "util-linux": ["prlimit", "setpriv", "nsenter"],
  iproute2: ["ip"],
  openssl: ["openssl"],
};

const EVERY_TOOL = [
  "python3 -m venv",
  "java",
  "mvn",
  "bwrap",
  "prlimit",
  "setpriv",
  "ip",
  "openssl",
  "nsenter",
  "apt-get",
];

/**
 * A machine with `tools` (tool names as the checks name them, plus `apt-get`), whose apt-get
 * installs what it is asked for unless `installFails`. Records every command run.
 */
function fakeSystem(options: {
  uid: number;
  tools: string[];
  installFails?: boolean;
  installIsNoop?: boolean;
}) {
  const tools = new Set(options.tools);
  const commands: string[] = [];
  const ok: CommandResult = { code: 0, output: "" };
  const system: System = {
    uid: options.uid,
    async run(file, args) {
      commands.push([file, ...args].join(" "));
      if (file === "sh") return tools.has(args.at(-1) ?? "") ? ok : { code: 1, output: "" };
      if (file === "python3") return tools.has("python3 -m venv") ? ok : { code: 1, output: "No module" };
      if (file === "apt-get") return ok;
      if (file === "env") {
        if (options.installFails) return { code: 100, output: "E: Unable to locate package bubblewrap" };
        if (options.installIsNoop) return ok;
        for (const name of args.slice(5)) for (const tool of PACKAGE_TOOLS[name] ?? []) tools.add(tool);
        return ok;
      }
      throw new Error(`unexpected command ${file}`);
    },
  };
  return { system, commands, apt: () => commands.filter((command) => /^(apt-get|env) /.test(command)) };
}

describe("prerequisites", () => {
  describe("provideSystemPackages", () => {
    it("as non-root, installs nothing and names the missing package and the command that installs it", async () => {
      // Prepare
      const { system, apt } = fakeSystem({ uid: 1000, tools: EVERY_TOOL.filter((tool) => tool !== "bwrap") });
      const said: string[] = [];

      // Act
      const outcome = await provideSystemPackages(TEST_PREREQUISITES, system, {
        purpose: "npm test",
        say: (line) => said.push(line),
      });

      // Assess
      assert.ok(!outcome.ok);
      assert.equal(outcome.attempted, false);
      assert.deepEqual(outcome.packages, ["bubblewrap"]);
      assert.match(
        outcome.message,
        /^npm test needs system packages that are missing here:\n {2}bubblewrap: .*\nWhy they were not installed: installing them needs root\.\n/,
      );
      assert.match(outcome.message, /\n {2}bubblewrap: bwrap confines each local kernel/);
      assert.match(outcome.message, /\n {2}sudo apt-get update && sudo apt-get install -y bubblewrap$/);
      assert.doesNotMatch(outcome.message, /maven|util-linux/);
      assert.deepEqual(apt(), [], "no apt-get run");
      assert.deepEqual(said, []);
    });

    it("as root with apt-get, updates once and installs every missing package in one call", async () => {
      // Prepare
      const { system, apt } = fakeSystem({
        uid: 0,
        tools: ["python3 -m venv", "java", "prlimit", "ip", "openssl", "apt-get"],
      });
      const said: string[] = [];

      // Act
      const outcome = await provideSystemPackages(TEST_PREREQUISITES, system, {
        purpose: "npm test",
        say: (line) => said.push(line),
      });

      // Assess
      assert.deepEqual(outcome, { ok: true, installed: ["maven", "bubblewrap", "util-linux"] });
      assert.deepEqual(apt(), [
        "apt-get update -qq",
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven bubblewrap util-linux",
      ]);
      assert.equal(said.length, 1, "one line");
      assert.match(said[0] ?? "", /^Installing maven, bubblewrap, util-linux with apt-get .*for npm test: /);
      assert.match(said[0] ?? "", /mvn fetches ElasticMQ.*bwrap confines.*setpriv drops/);
    });

    it("does nothing when nothing is missing", async () => {
      // Prepare
      const { system, apt } = fakeSystem({ uid: 0, tools: EVERY_TOOL });
      const said: string[] = [];

      // Act
      const outcome = await provideSystemPackages(TEST_PREREQUISITES, system, {
        purpose: "npm test",
        say: (line) => said.push(line),
      });

      // Assess
      assert.deepEqual(outcome, { ok: true, installed: [] });
      assert.deepEqual(apt(), []);
      assert.deepEqual(said, []);
    });

    it("does not ask a non-root machine for setpriv, which only a root server uses", async () => {
      // Prepare
      const { system } = fakeSystem({ uid: 1000, tools: EVERY_TOOL.filter((tool) => tool !== "setpriv") });

      // Act
      const outcome = await provideSystemPackages(TEST_PREREQUISITES, system, { purpose: "npm test" });

      // Assess
      assert.deepEqual(outcome, { ok: true, installed: [] });
    });

    it("as root without apt-get, gives the Debian command and says it is for Debian", async () => {
      // Prepare
      const { system } = fakeSystem({
        uid: 0,
        tools: ["python3 -m venv", "bwrap", "prlimit", "setpriv", "ip", "openssl", "nsenter"],
      });

      // Act
      const outcome = await provideSystemPackages(TEST_PREREQUISITES, system, { purpose: "npm test" });

      // Assess
      assert.ok(!outcome.ok);
      assert.equal(outcome.attempted, false);
      assert.match(outcome.message, /\nWhy they were not installed: apt-get is not available here\.\n/);
      assert.match(outcome.message, /Debian\/Ubuntu/);
      assert.match(outcome.message, /\n {2}apt-get update && apt-get install -y default-jre-headless maven$/);
    });

    it("as root, when apt-get fails, stops with its error and the command to run", async () => {
      // Prepare
      const { system, apt } = fakeSystem({
        uid: 0,
        tools: EVERY_TOOL.filter((tool) => tool !== "bwrap"),
        installFails: true,
      });

      // Act
      const outcome = await provideSystemPackages(TEST_PREREQUISITES, system, {
        purpose: "npm test",
        say: () => undefined,
      });

      // Assess
      assert.ok(!outcome.ok);
      assert.equal(outcome.attempted, true);
      assert.match(
        outcome.message,
        /\nWhy they were not installed: apt-get install failed \(exit 100\): E: Unable to locate package bubblewrap\.\n/,
      );
      assert.match(outcome.message, /\n {2}apt-get update && apt-get install -y bubblewrap$/);
      assert.equal(apt().length, 2);
    });

    it("as root, stops when apt-get succeeded but the tool still is not there", async () => {
      // Prepare
      const { system } = fakeSystem({
        uid: 0,
        tools: ["prlimit", "setpriv", "apt-get"],
        installIsNoop: true,
      });

      // Act
      const outcome = await provideSystemPackages(SANDBOX_PREREQUISITES, system, {
        purpose: "npm start",
        say: () => undefined,
      });

      // Assess
      assert.ok(!outcome.ok);
      assert.equal(outcome.attempted, true);
      assert.match(
        outcome.message,
        /\nWhy they were not installed: apt-get install succeeded, but these still do not work: bwrap\.\n/,
      );
    });
  });

  describe("provideSandboxTools", () => {
    it("as root, installs bubblewrap and checks nothing the tests alone need", async () => {
      // Prepare
      const { system, commands, apt } = fakeSystem({ uid: 0, tools: ["prlimit", "setpriv", "apt-get"] });
      const said: string[] = [];

      // Act
      await provideSandboxTools(system, (line) => said.push(line));

      // Assess
      assert.deepEqual(apt(), [
        "apt-get update -qq",
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap",
      ]);
      assert.equal(said.length, 1);
      assert.ok(!commands.some((command) => /java|mvn|python3/.test(command)));
    });

    it("as non-root, stays quiet: the server's warning banner says what is missing", async () => {
      // Prepare
      const { system, apt } = fakeSystem({ uid: 1000, tools: ["prlimit", "apt-get"] });
      const said: string[] = [];

      // Act
      await provideSandboxTools(system, (line) => said.push(line));

      // Assess
      assert.deepEqual(apt(), []);
      assert.deepEqual(said, []);
    });
  });

  describe("planSetup", () => {
    it("installs as root with apt-get, and instructs otherwise", () => {
      // Prepare
      const missing = SANDBOX_PREREQUISITES;

      // Act
      const plans = [
        planSetup(missing, { root: true, aptGet: true }),
        planSetup(missing, { root: false, aptGet: true }),
        planSetup(missing, { root: true, aptGet: false }),
        planSetup([], { root: false, aptGet: false }),
      ];

      // Assess
      assert.deepEqual(
        plans.map((plan) => plan.kind),
        ["install", "instruct", "instruct", "ready"],
      );
      assert.deepEqual(plans[0], { kind: "install", packages: ["bubblewrap", "util-linux"] });
    });
  });
});
