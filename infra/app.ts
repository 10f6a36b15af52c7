import { App } from "aws-cdk-lib";
import { checkWithCdkNag } from "./nag.ts";
import { readSettings, type Settings, SettingsError } from "./settings.ts";
import { PyboxStack } from "./stack.ts";

/**
 * `cdk synth` / `cdk deploy` entry: settings from context (a wrong one stops here with its
 * message alone, no stack trace), the stack, and cdk-nag's AWS Solutions checks.
 */
const app = new App();
let settings: Settings;
try {
  settings = readSettings(app);
} catch (error) {
  if (!(error instanceof SettingsError)) throw error;
  console.error(error.message);
  process.exit(1);
}
new PyboxStack(app, "PyboxServerless", {
  settings,
  description: "pybox-serverless: a code sandbox for LLM agents (IPython kernels behind an HTTP API)",
});
checkWithCdkNag(app);
app.synth();
