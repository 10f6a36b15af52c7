import { hostSystem, provideSystemPackages, TEST_PREREQUISITES } from "./prerequisites.ts";

/**
 * `npm run setup:system`, the first step of `npm test`: provides the system tools the tests need
 * (the Python venv module, Java and Maven for ElasticMQ, bubblewrap for the sandbox), installing
 * them as root with apt-get, or stopping before any test with the command that installs them.
 */
const outcome = await provideSystemPackages(TEST_PREREQUISITES, hostSystem(), { purpose: "npm test" });
if (outcome.ok) {
  console.log(
    outcome.installed.length > 0
      ? `Installed ${outcome.installed.join(", ")}; every system tool the tests need is present.`
      : `System tools present: ${TEST_PREREQUISITES.map((prerequisite) => prerequisite.tool).join(", ")}.`,
  );
} else {
  console.error(`${outcome.message}\nStopped before running any test.`);
  process.exitCode = 1;
}
