import { App } from "aws-cdk-lib";
import { PyboxStack } from "./stack.ts";

/** `cdk synth` / `cdk deploy` entry. */
const app = new App();
new PyboxStack(app, "PyboxServerless");
app.synth();
