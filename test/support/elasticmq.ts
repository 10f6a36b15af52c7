import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  type QueueAttributeName,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { PROJECT_ROOT } from "../../lib/config.ts";
import { freePort } from "./free-port.ts";

/** The pom whose one dependency is the ElasticMQ server; the single place its version is pinned. */
export const ELASTICMQ_POM = join(PROJECT_ROOT, "test", "support", "elasticmq", "pom.xml");

/** The ElasticMQ version the tests run, read from the pom so a bump is a one-line change there. */
export const ELASTICMQ_VERSION = readPomVersion(ELASTICMQ_POM);

/** Where the installer puts ElasticMQ's runtime jars: the git-ignored `.pybox/`, one folder per version. */
export const ELASTICMQ_HOME = join(PROJECT_ROOT, ".pybox", "elasticmq", ELASTICMQ_VERSION);

/** ElasticMQ's entry point (`Main-Class` of `elasticmq-server_2.13`). */
const MAIN_CLASS = "org.elasticmq.server.Main";

/** Written last by the installer, so a half-finished download is never taken for an installation. */
const MARKER = ".pybox-installed.json";

/** Region the SQS clients sign for and ElasticMQ puts in queue ARNs, as in a real account. */
const REGION = "us-east-1";

/** The account ID ElasticMQ puts in queue URLs and ARNs. */
const ACCOUNT_ID = "000000000000";

/** ElasticMQ does not check signatures, but the SDK needs something to sign with. */
const CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" } as const;

/** What `ensureElasticMq` found or did, for the installer's one line of output. */
export interface ElasticMqInstall {
  version: string;
  dir: string;
  installed: boolean;
  jars: number;
  ms: number;
}

/** What the installer records after a complete download, and checks before trusting a folder. */
interface Marker {
  version: string;
  pomSha256: string;
  jars: string[];
}

/**
 * Makes sure ElasticMQ's runtime classpath is in `.pybox/elasticmq/<version>/lib`, so tests can
 * start a real SQS API without Docker. The first run resolves it from Maven Central with `mvn`
 * (about 40 MB); later runs see the marker and return at once. Downloads into a scratch folder
 * and renames it into place, so an interrupted or concurrent run never leaves a half-filled
 * folder that looks installed. Throws a clear error when `java` or `mvn` is missing.
 */
export async function ensureElasticMq(): Promise<ElasticMqInstall> {
  const started = Date.now();
  const pomSha256 = createHash("sha256")
    .update(await readFile(ELASTICMQ_POM))
    .digest("hex");
  const present = readMarker(ELASTICMQ_HOME);
  if (present?.pomSha256 === pomSha256) {
    return result(false, present.jars.length);
  }

  requireTool(javaCommand(), ["-version"], "Java (11 or newer)");
  requireTool("mvn", ["-v"], "Maven");
  const parent = join(ELASTICMQ_HOME, "..");
  await mkdir(parent, { recursive: true });
  const scratch = await mkdtemp(join(parent, `.${ELASTICMQ_VERSION}-`));
  await chmod(scratch, 0o755);
  try {
    const lib = join(scratch, "lib");
    await run("mvn", [
      "-q",
      "-B",
      "-Dstyle.color=never",
      "-f",
      ELASTICMQ_POM,
      "dependency:copy-dependencies",
      `-DoutputDirectory=${lib}`,
      "-DincludeScope=runtime",
    ]);
    const jars = (await readdir(lib)).filter((name) => name.endsWith(".jar")).sort();
    if (!jars.some((name) => name.startsWith("elasticmq-server_"))) {
      throw new Error(`mvn finished but ${lib} has no elasticmq-server jar (found: ${jars.join(", ")})`);
    }
    const marker: Marker = { version: ELASTICMQ_VERSION, pomSha256, jars };
    await writeFile(join(scratch, MARKER), `${JSON.stringify(marker, null, 2)}\n`);
    // Another run may have finished first; its installation is as good as ours.
    if (readMarker(ELASTICMQ_HOME)?.pomSha256 === pomSha256) return result(false, jars.length);
    await rm(ELASTICMQ_HOME, { recursive: true, force: true });
    try {
      await rename(scratch, ELASTICMQ_HOME);
    } catch (error) {
      if (readMarker(ELASTICMQ_HOME)?.pomSha256 === pomSha256) return result(false, jars.length);
      throw error;
    }
    return result(true, jars.length);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }

  function result(installed: boolean, jars: number): ElasticMqInstall {
    return { version: ELASTICMQ_VERSION, dir: ELASTICMQ_HOME, installed, jars, ms: Date.now() - started };
  }
}

/** Options for a queue made by `ElasticMq.createQueue`; everything else is SQS's default. */
export interface CreateQueueOptions {
  /** A FIFO queue; its name must end in `.fifo`. Defaults to whether the name does. */
  fifo?: boolean;
  /** FIFO only: deduplicate on a hash of the body when a send gives no deduplication ID. */
  contentBasedDeduplication?: boolean;
  /** How long a received message stays hidden before it can be received again (SQS default 30). */
  visibilityTimeoutSeconds?: number;
  /** Where messages go after `maxReceiveCount` receives without a delete, by ARN or queue name. */
  deadLetter?: { maxReceiveCount: number } & ({ arn: string } | { name: string });
  /** Any other SQS queue attributes, passed through as given. */
  attributes?: Partial<Record<QueueAttributeName, string>>;
}

/** A queue made by `ElasticMq.createQueue`: the URL to send to and the ARN other queues refer to. */
export interface LocalQueue {
  url: string;
  arn: string;
}

/** A running ElasticMQ: the real SQS API on loopback, for tests of code that talks to SQS. */
export interface ElasticMq {
  /** `http://127.0.0.1:<port>`, for an SQS client's `endpoint`; queue URLs start with it too. */
  endpoint: string;
  /** The region queue ARNs name and clients should sign for (`us-east-1`). */
  region: string;
  /** Static dummy credentials ElasticMQ accepts (it does not check signatures). */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** A client already pointed at this server; destroyed by `close()`. */
  sqs: SQSClient;
  /** Creates a queue (and its redrive policy) and returns its URL and ARN. */
  createQueue(name: string, options?: CreateQueueOptions): Promise<LocalQueue>;
  /** The server's log so far (last 64 KiB), for failure messages. */
  output(): string;
  /** Stops the JVM, waits for it to exit and removes its config folder. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts ElasticMQ on a free loopback port, in memory, with SQS's strict limits (which in
 * ElasticMQ 1.7 include SQS's 1 MiB message size), and waits until it answers `ListQueues`.
 * Queue URLs use `127.0.0.1:<port>`, so SDK clients that follow queue URLs stay local. Installs
 * ElasticMQ first if `npm run setup:elasticmq` has not yet run. Always closed by the test that
 * started it.
 */
export async function startElasticMq(): Promise<ElasticMq> {
  const install = await ensureElasticMq();
  if (install.installed) console.log(`Installed ElasticMQ ${install.version} into ${install.dir}.`);
  const home = await mkdtemp(join(tmpdir(), "pybox-elasticmq-"));
  try {
    // A port that was free when probed can be taken before the JVM binds it; try a fresh one then.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      try {
        return await launch(home, port);
      } catch (error) {
        if (!(error instanceof BindError) || attempt === 3) throw error;
      }
    }
  } catch (error) {
    await rm(home, { recursive: true, force: true });
    throw error;
  }
}

/** The JVM could not bind its port; `startElasticMq` retries on another. */
class BindError extends Error {}

async function launch(home: string, port: number): Promise<ElasticMq> {
  const config = join(home, "elasticmq.conf");
  await writeFile(config, elasticMqConfig(port));
  const child: ChildProcess = spawn(
    javaCommand(),
    [
      "-Xms32m",
      "-Xmx512m",
      "-XX:+UseSerialGC",
      "-XX:TieredStopAtLevel=1",
      `-Dconfig.file=${config}`,
      "-cp",
      join(ELASTICMQ_HOME, "lib", "*"),
      MAIN_CLASS,
    ],
    {
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, LANG: "C.UTF-8" },
      cwd: home,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-64 * 1024);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let spawnError: Error | undefined;
  child.on("error", (error) => {
    spawnError = error;
  });
  // Not `once(child, "exit")`: that rejects on a spawn error, which nobody would be awaiting.
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const endpoint = `http://127.0.0.1:${port}`;
  const clientConfig = { endpoint, region: REGION, credentials: CREDENTIALS };
  // One attempt per poll: the loop retries, and a stuck request must not outlive its poll.
  const probe = new SQSClient({ ...clientConfig, maxAttempts: 1 });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null && !spawnError) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
  };

  try {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (spawnError) {
        throw new Error(
          `ElasticMQ needs Java: could not run ${javaCommand()} (${spawnError.message}). Install it, e.g. \`apt-get install -y default-jre-headless\`, or set JAVA_HOME.`,
        );
      }
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`ElasticMQ exited early (${child.exitCode ?? child.signalCode}):\n${output}`);
      }
      if (/BindException|Bind failed|Address already in use/.test(output)) {
        throw new BindError(`ElasticMQ could not bind ${endpoint}:\n${output}`);
      }
      const ok = await probe
        .send(new ListQueuesCommand({}), { abortSignal: AbortSignal.timeout(2_000) })
        .then(
          () => true,
          () => false,
        );
      if (ok) break;
      if (Date.now() > deadline)
        throw new Error(`ElasticMQ did not answer on ${endpoint} within 60 s:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  } finally {
    probe.destroy();
  }

  const sqs = new SQSClient(clientConfig);
  const arnOf = async (url: string): Promise<string> => {
    const { Attributes } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }),
    );
    const arn = Attributes?.QueueArn;
    if (!arn) throw new Error(`ElasticMQ returned no QueueArn for ${url}`);
    return arn;
  };

  return {
    endpoint,
    region: REGION,
    credentials: { ...CREDENTIALS },
    sqs,
    async createQueue(name, options = {}) {
      const fifo = options.fifo ?? name.endsWith(".fifo");
      if (fifo !== name.endsWith(".fifo")) {
        throw new Error(`queue ${name}: SQS requires FIFO queue names, and only them, to end in .fifo`);
      }
      const attributes: Partial<Record<QueueAttributeName, string>> = { ...options.attributes };
      if (fifo) attributes.FifoQueue = "true";
      if (options.contentBasedDeduplication !== undefined) {
        attributes.ContentBasedDeduplication = String(options.contentBasedDeduplication);
      }
      if (options.visibilityTimeoutSeconds !== undefined) {
        attributes.VisibilityTimeout = String(options.visibilityTimeoutSeconds);
      }
      const deadLetter = options.deadLetter;
      if (deadLetter) {
        const deadLetterTargetArn =
          "arn" in deadLetter
            ? deadLetter.arn
            : await arnOf(
                (await sqs.send(new GetQueueUrlCommand({ QueueName: deadLetter.name }))).QueueUrl ?? "",
              );
        attributes.RedrivePolicy = JSON.stringify({
          deadLetterTargetArn,
          maxReceiveCount: deadLetter.maxReceiveCount,
        });
      }
      const { QueueUrl } = await sqs.send(
        new CreateQueueCommand({ QueueName: name, Attributes: attributes }),
      );
      if (!QueueUrl) throw new Error(`ElasticMQ returned no QueueUrl for ${name}`);
      return { url: QueueUrl, arn: await arnOf(QueueUrl) };
    },
    output: () => output,
    async close() {
      sqs.destroy();
      await stop();
      await rm(home, { recursive: true, force: true });
    },
  };
}

/**
 * The server's whole configuration: only the SQS REST interface, on loopback, in memory. The
 * 1.7 server has no UI or stats listener; its one port is the SQS one.
 */
function elasticMqConfig(port: number): string {
  return `# Written by test/support/elasticmq.ts for one test run.
include classpath("application.conf")

node-address {
  protocol = "http"
  host = "127.0.0.1"
  port = ${port}
  context-path = ""
}
generate-node-address = false

rest-sqs {
  enabled = true
  bind-hostname = "127.0.0.1"
  bind-port = ${port}
  sqs-limits = strict
}

aws {
  region = "${REGION}"
  accountId = "${ACCOUNT_ID}"
}

queues {}
queues-storage { enabled = false }
messages-storage { enabled = false }
`;
}

/** `$JAVA_HOME/bin/java` when set (as Maven would use), else `java` from PATH. */
function javaCommand(): string {
  const javaHome = process.env.JAVA_HOME;
  return javaHome ? join(javaHome, "bin", "java") : "java";
}

function readPomVersion(pom: string): string {
  const match = /<elasticmq\.version>\s*([^<\s]+)\s*<\/elasticmq\.version>/.exec(readFileSync(pom, "utf8"));
  if (!match?.[1]) throw new Error(`${pom} has no <elasticmq.version> property`);
  return match[1];
}

function readMarker(dir: string): Marker | undefined {
  const file = join(dir, MARKER);
  if (!existsSync(file)) return undefined;
  try {
    const marker = JSON.parse(readFileSync(file, "utf8")) as Marker;
    const complete = marker.jars.every((jar) => existsSync(join(dir, "lib", jar)));
    return complete ? marker : undefined;
  } catch {
    return undefined;
  }
}

function requireTool(command: string, args: string[], what: string): void {
  const probe = spawnSync(command, args, { stdio: "ignore" });
  if (probe.error || probe.status !== 0) {
    throw new Error(
      `ElasticMQ (the tests' local SQS) needs ${what}: \`${command}\` ${
        probe.error ? `is not available (${probe.error.message})` : `failed (exit ${probe.status})`
      }. Install it, e.g. \`apt-get install -y default-jre-headless maven\`, then run \`npm run setup:elasticmq\`.`,
    );
  }
}

/** Maven's colour codes, which it prints even with `-B`. */
const ANSI_COLOUR = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** Runs a command quietly; its output (colour codes stripped) goes into the error when it fails. */
function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) return resolve();
      const log = output.replace(ANSI_COLOUR, "").trim();
      reject(new Error(`${command} ${args.join(" ")} exited with ${code}:\n${log}`));
    });
  });
}
