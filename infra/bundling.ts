import { readFileSync } from "node:fs";
import { dirname, join, posix, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Runtime } from "aws-cdk-lib/aws-lambda";
import { type BundlingOptions, LogLevel, OutputFormat, SourceMapMode } from "aws-cdk-lib/aws-lambda-nodejs";
import type { BuildOptions } from "esbuild";

/**
 * How every function is bundled, in one place: the CDK stack and `bench/bundles.ts` both derive
 * their esbuild options from here, so the benchmark measures exactly what is deployed.
 */

/** The backends a deployment can use; `local` runs kernels beside the handler, which Lambda cannot. */
export type DeployedBackend = "gateway" | "cluster";

/** Lambda's two instruction sets, spelled as Lambda spells them. */
export type LambdaArchitecture = "arm64" | "x86_64";

/** Node 24 is the Lambda runtime and the bundle target; the tests run on it too. */
export const NODE_MAJOR = 24;

/** The Lambda runtime of {@link NODE_MAJOR}, beside it so the two cannot drift apart. */
export const LAMBDA_RUNTIME = Runtime.NODEJS_24_X;

/**
 * The ABI folder of the zeromq addon that is shipped. zeromq builds it with node-addon-api (N-API,
 * stable across Node majors) under Node 22 (ABI 127) for linux arm64 and x64; its loader picks that
 * build on Node 24 as well, which `test/unit/runtime-node.test.ts` checks on the tests' own Node 24.
 */
export const NODE_ABI = 127;

/** The project root: entries, `node_modules` and the lock file are found from here. */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The one native package: it cannot be bundled, so it stays external and is copied into the asset. */
export const NATIVE_MODULE = "zeromq";

/**
 * Lets bundled CommonJS dependencies `require` Node builtins from an ES module. The alias keeps
 * the banner's import from colliding with a bundled module's own `createRequire` import.
 */
const BANNER =
  "import{createRequire as __pyboxCreateRequire}from'node:module';const require=__pyboxCreateRequire(import.meta.url);";

/**
 * The options both the stack and the benchmark use. `keepNames` keeps class names through
 * minification: `lib/errors.ts` names each error after its class (`new.target.name`), and logs
 * would otherwise show `e` instead of `NotFoundError`.
 */
const SPEC = {
  target: `node${NODE_MAJOR}`,
  minify: true,
  keepNames: true,
  sourcemap: true,
  sourcesContent: false,
  mainFields: ["module", "main"],
  external: [NATIVE_MODULE],
  banner: BANNER,
} as const;

/**
 * Replaces `process.env.PYBOX_BUNDLED_BACKEND` with the deployed backend at bundle time, so
 * `lib/runtime.ts`'s guarded `import()`s of the other backends are dead code that esbuild drops
 * (a gateway bundle carries no Kubernetes client, a cluster bundle no Jupyter services).
 */
function defines(backend: DeployedBackend, tracing: boolean): Record<string, string> {
  return {
    "process.env.PYBOX_BUNDLED_BACKEND": JSON.stringify(backend),
    // Likewise the tracer (Powertools Tracer and the X-Ray SDK): only in a traced deployment's bundles.
    "process.env.PYBOX_BUNDLED_TRACING": JSON.stringify(tracing ? "on" : "off"),
  };
}

/**
 * esbuild options for one function's bundle, for calling esbuild directly (the benchmark). The
 * output file is `index.mjs`, as the stack's bundles are named.
 */
export function esbuildOptions(
  entry: string,
  outdir: string,
  backend: DeployedBackend,
  tracing = false,
): BuildOptions {
  return {
    entryPoints: [entry],
    outfile: join(outdir, "index.mjs"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: SPEC.target,
    minify: SPEC.minify,
    keepNames: SPEC.keepNames,
    sourcemap: SPEC.sourcemap,
    sourcesContent: SPEC.sourcesContent,
    mainFields: [...SPEC.mainFields],
    external: [...SPEC.external],
    define: defines(backend, tracing),
    banner: { js: SPEC.banner },
    logLevel: "warning",
  };
}

/**
 * The same options for a `NodejsFunction`: local esbuild (no Docker), no `npm install` (so
 * `cdk synth` needs no network), and, when the bundle imports zeromq, the zeromq package copied
 * from this project's `node_modules` with only the addon for the function's architecture. Whether
 * it does is read from the bundle itself, so a function ships the addon exactly when it loads it.
 */
export function lambdaBundling(
  backend: DeployedBackend,
  architecture: LambdaArchitecture,
  tracing = false,
): BundlingOptions {
  return {
    format: OutputFormat.ESM,
    target: SPEC.target,
    minify: SPEC.minify,
    keepNames: SPEC.keepNames,
    sourceMap: SPEC.sourcemap,
    sourceMapMode: SourceMapMode.DEFAULT,
    sourcesContent: SPEC.sourcesContent,
    mainFields: [...SPEC.mainFields],
    externalModules: [...SPEC.external],
    define: defines(backend, tracing),
    banner: SPEC.banner,
    logLevel: LogLevel.WARNING,
    forceDockerBundling: false,
    commandHooks: {
      beforeBundling: () => [],
      beforeInstall: () => [],
      afterBundling: (inputDir, outputDir) => [shipZeromqIfImported(architecture, inputDir, outputDir)],
    },
  };
}

/** One file or folder to copy, relative to the project root (from) and to the asset root (to). */
export interface CopyStep {
  from: string;
  to: string;
  /** A file whose content is written instead of copied (the trimmed addon manifest). */
  content?: string;
}

/** zeromq's name for an architecture (Node's `process.arch`). */
function nodeArch(architecture: LambdaArchitecture): "arm64" | "x64" {
  return architecture === "arm64" ? "arm64" : "x64";
}

/**
 * What of zeromq a function needs at run time, and nothing else: its compiled `lib/` (no type
 * declarations), `package.json`, one prebuilt addon (linux, the function's architecture, glibc,
 * Node's ABI), a manifest listing only that addon, and the one file of `cmake-ts` its loader
 * requires (`build/loader.js`, which needs only Node builtins) with `cmake-ts`'s `package.json`
 * for its `exports` map. `node-addon-api` is a build-time dependency and is left out.
 */
export function zeromqFiles(architecture: LambdaArchitecture, projectRoot = PROJECT_ROOT): CopyStep[] {
  const addon = posix.join("linux", nodeArch(architecture), "node", `glibc-${NODE_ABI}-Release`);
  const zmq = "node_modules/zeromq";
  return [
    { from: `${zmq}/package.json`, to: `${zmq}/package.json` },
    { from: `${zmq}/lib`, to: `${zmq}/lib` },
    { from: `${zmq}/build/${addon}`, to: `${zmq}/build/${addon}` },
    {
      from: `${zmq}/build/manifest.json`,
      to: `${zmq}/build/manifest.json`,
      content: trimmedManifest(join(projectRoot, zmq, "build", "manifest.json"), `${addon}/addon.node`),
    },
    { from: "node_modules/cmake-ts/package.json", to: "node_modules/cmake-ts/package.json" },
    { from: "node_modules/cmake-ts/build/loader.js", to: "node_modules/cmake-ts/build/loader.js" },
  ];
}

/**
 * zeromq's manifest maps each build configuration to its addon path; the loader tries every entry
 * matching the platform. Keeping only the shipped addon means a failure names that one file.
 */
function trimmedManifest(path: string, addonPath: string): string {
  const manifest: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (manifest === null || typeof manifest !== "object") {
    throw new Error(`zeromq manifest is not a JSON object: ${path}`);
  }
  const kept = Object.entries(manifest).filter(([, value]) => value === addonPath);
  if (kept.length === 0) {
    throw new Error(`zeromq has no prebuilt addon ${addonPath} (is node_modules/zeromq v6 installed?)`);
  }
  return JSON.stringify(Object.fromEntries(kept));
}

/** How an ES module bundle imports an external package, statically or dynamically. */
export const IMPORTS_ZEROMQ = /(?:from|import\()\s*"zeromq"/;

/** The shell test for {@link IMPORTS_ZEROMQ} on a bundle, followed by the copy when it matches. */
function shipZeromqIfImported(architecture: LambdaArchitecture, inputDir: string, outputDir: string): string {
  const bundle = quote(posix.join(outputDir, "index.mjs"));
  return `if grep -Eq '(from|import[(])[[:space:]]*"zeromq"' ${bundle}; then ${zeromqCopyCommand(architecture, inputDir, outputDir)}; fi`;
}

/** POSIX shell single-quoting. */
function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * {@link zeromqFiles} as the one shell command `afterBundling` returns (CDK runs it with bash
 * after esbuild, from the project root); the benchmark runs the same command, so both ship the
 * same files. Type declarations, source maps and the TypeScript 3.7 typings are dropped from `lib/`.
 */
export function zeromqCopyCommand(
  architecture: LambdaArchitecture,
  inputDir: string,
  outputDir: string,
): string {
  const commands: string[] = [];
  for (const step of zeromqFiles(architecture)) {
    const to = quote(posix.join(outputDir, step.to));
    commands.push(`mkdir -p ${quote(posix.dirname(posix.join(outputDir, step.to)))}`);
    if (step.content !== undefined) {
      commands.push(`printf '%s' ${quote(step.content)} > ${to}`);
    } else {
      commands.push(`cp -R ${quote(posix.join(inputDir, step.from))} ${to}`);
    }
  }
  const lib = quote(posix.join(outputDir, "node_modules/zeromq/lib"));
  commands.push(`rm -rf ${lib}/ts3.7 ${lib}/tsconfig.tsbuildinfo`);
  commands.push(`find ${lib} \\( -name '*.d.ts' -o -name '*.map' \\) -type f -delete`);
  return commands.join(" && ");
}
