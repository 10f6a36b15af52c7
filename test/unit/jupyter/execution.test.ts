import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setImmediate as tick } from "node:timers/promises";
import * as z from "zod";
import { deferred } from "../../../lib/async.ts";
import {
  BackendError,
  KernelCodeError,
  KernelDiedError,
  KernelStuckError,
  ValidationError,
} from "../../../lib/errors.ts";
import { ARTIFACT_LIMIT, ARTIFACTS_SOURCE } from "../../../lib/jupyter/artifacts.ts";
import { evaluate, runCode, runSilently } from "../../../lib/jupyter/execution.ts";
import type { JupyterMessage } from "../../../lib/jupyter/messages.ts";
import type {
  AnswerChannel,
  AnswerListener,
  ExecuteRequest,
  KernelTransport,
} from "../../../lib/jupyter/transport.ts";

const CAP = 1024 * 1024;
const LIMITS = { timeoutMs: 5_000, interruptGraceMs: 1_000, maxOutputBytes: CAP, maxOutputEntryBytes: CAP };

/** One message of a recorded answer: where it came from, its type and content. */
type Recorded = [AnswerChannel, string, Record<string, unknown>];

/*
 * Answers as ipykernel 6.31 sent them (recorded with jupyter_client against the project's kernel
 * venv), with the parent header filled in for each request.
 */
const busy: Recorded = ["iopub", "status", { execution_state: "busy" }];
const idle: Recorded = ["iopub", "status", { execution_state: "idle" }];
const input = (code: string, count: number): Recorded => [
  "iopub",
  "execute_input",
  { code, execution_count: count },
];
const result = (text: string, count: number): Recorded => [
  "iopub",
  "execute_result",
  { data: { "text/plain": text }, metadata: {}, execution_count: count },
];
const stdout = (text: string): Recorded => ["iopub", "stream", { name: "stdout", text }];
const replyOk = (count: number, userExpressions: Record<string, unknown> = {}): Recorded => [
  "shell",
  "execute_reply",
  { status: "ok", execution_count: count, user_expressions: userExpressions, payload: [] },
];
const raised = (ename: string, evalue: string): Recorded => [
  "iopub",
  "error",
  { ename, evalue, traceback: [`\u001b[31m${ename}\u001b[39m: ${evalue}`] },
];
const replyError = (count: number, ename: string, evalue: string): Recorded => [
  "shell",
  "execute_reply",
  {
    status: "error",
    ename,
    evalue,
    traceback: [],
    execution_count: count,
    user_expressions: {},
    payload: [],
  },
];

/** The artifacts tracker's entry in a reply's payload, as the kernel's `post_run_cell` hook writes it. */
const artifactsPayload = (files: Array<[string, number, number]>, truncated = false) => ({
  source: ARTIFACTS_SOURCE,
  files: files.map(([path, size, mtime]) => ({ path, size, mtime })),
  truncated,
});

/** `answer` with its `payload` replaced. */
const withPayload = ([channel, msgType, content]: Recorded, payload: unknown): Recorded => [
  channel,
  msgType,
  { ...content, payload },
];

const NOON = Date.UTC(2026, 11, 4, 12, 0, 0);

/**
 * A transport to a kernel that is a script: `answer` says what the kernel sends for a request (in
 * that order, one event-loop turn apart), and `onInterrupt` what it sends when interrupted. It
 * counts executions as ipykernel does: a silent request bumps nothing.
 */
class ScriptedKernel implements KernelTransport {
  readonly session = "client-session";
  readonly requests: ExecuteRequest[] = [];
  interrupts = 0;
  count = 0;
  private readonly listeners = new Map<string, AnswerListener>();
  private readonly dying = deferred<never>();

  constructor(
    private readonly answer: (request: ExecuteRequest, kernel: ScriptedKernel) => Recorded[],
    private readonly onInterrupt: (request: ExecuteRequest) => Recorded[] = () => [],
  ) {
    this.dying.promise.catch(() => undefined);
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  listen(msgId: string, listener: AnswerListener): () => void {
    this.listeners.set(msgId, listener);
    return () => this.listeners.delete(msgId);
  }

  async send(request: ExecuteRequest): Promise<void> {
    this.requests.push(request);
    if (!request.content.silent) this.count += 1;
    void this.deliver(request, this.answer(request, this));
  }

  async interrupt(): Promise<void> {
    this.interrupts += 1;
    const running = this.requests.at(-1);
    if (running) void this.deliver(running, this.onInterrupt(running));
  }

  death(): Promise<never> {
    return this.dying.promise;
  }

  /** The kernel is found dead, as a transport's liveness watch would find it. */
  die(error: Error): void {
    this.dying.reject(error);
  }

  /** Sends recorded answers to `request`, one event-loop turn apart. */
  async deliver(request: ExecuteRequest, answers: Recorded[]): Promise<void> {
    for (const [channel, msgType, content] of answers) {
      await tick();
      this.listeners.get(request.header.msg_id)?.(answerTo(request, msgType, content), channel);
    }
  }
}

let sequence = 0;

/** A kernel message whose parent is `request`. */
function answerTo(
  request: ExecuteRequest,
  msgType: string,
  content: Record<string, unknown>,
): JupyterMessage {
  sequence += 1;
  return {
    header: {
      msg_id: `kernel-${sequence}`,
      msg_type: msgType,
      session: "kernel-session",
      username: "kernel",
      date: "2026-01-01T00:00:00.000Z",
      version: "5.3",
    },
    parent_header: request.header,
    metadata: {},
    content,
    buffers: [],
  };
}

/** A user expression's value as ipykernel puts it in the reply: the repr of what it evaluated to. */
function expressionRepr(text: string) {
  return { status: "ok", data: { "text/plain": text }, metadata: {} };
}

/** True once `promise` has settled, after letting `turns` event-loop turns pass. */
async function settledWithin<T>(promise: Promise<T>, turns: number): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let i = 0; i < turns; i++) await tick();
  return settled;
}

describe("execution", () => {
  describe("runCode", () => {
    it("is done when the reply came before idle, and not before idle", async () => {
      // Prepare
      const gate = deferred<void>();
      const kernel = new ScriptedKernel((request, k) => {
        const answers: Recorded[] = [replyOk(k.count), busy, input("1+1", k.count), result("2", k.count)];
        void gate.promise.then(() => k.deliver(request, [idle]));
        return answers;
      });

      // Act
      const running = runCode(kernel, "1+1", LIMITS);

      // Assess
      assert.equal(await settledWithin(running, 10), false, "the run ended before its idle arrived");
      gate.resolve();
      const { result: outcome } = await running;
      assert.equal(outcome.status, "ok");
      assert.deepEqual(outcome.data, [{ "text/plain": "2" }]);
      assert.equal(outcome.executionCount, 1);
    });

    it("is done when idle came before the reply, and not before the reply", async () => {
      // Prepare
      const gate = deferred<void>();
      const kernel = new ScriptedKernel((request, k) => {
        void gate.promise.then(() => k.deliver(request, [replyOk(k.count)]));
        return [busy, input("print(1); print(1)", k.count), stdout("1\n"), stdout("1\n"), idle];
      });

      // Act
      const running = runCode(kernel, "print(1); print(1)", LIMITS);

      // Assess
      assert.equal(await settledWithin(running, 10), false, "the run ended before its reply arrived");
      gate.resolve();
      const { result: outcome } = await running;
      assert.equal(outcome.status, "ok");
      assert.deepEqual(outcome.data, [{ "text/plain": "1\n1\n" }]);
    });

    it("sends an interactive request, and hands back the user expressions' values", async () => {
      // Prepare
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        idle,
        replyOk(k.count, { pybox: expressionRepr("True"), broken: { status: "weird" } }),
      ]);

      // Act
      const { expressions } = await runCode(kernel, "x = 1", {
        ...LIMITS,
        userExpressions: { pybox: '"__pybox_kernel__" in globals()' },
      });

      // Assess
      const sent = kernel.requests[0]?.content;
      assert.equal(sent?.silent, false);
      assert.equal(sent?.store_history, true);
      assert.deepEqual(sent?.user_expressions, { pybox: '"__pybox_kernel__" in globals()' });
      assert.equal(kernel.requests[0]?.header.session, kernel.session);
      assert.deepEqual(Object.keys(expressions), ["pybox"], "a malformed value is left out");
      assert.equal(expressions.pybox?.status, "ok");
    });

    it("interrupts at the deadline and says timeout when the kernel honours the interrupt", async () => {
      // Prepare
      const kernel = new ScriptedKernel(
        (_, k) => [busy, input("import time; time.sleep(60)", k.count), stdout("started\n")],
        () => [raised("KeyboardInterrupt", ""), replyError(1, "KeyboardInterrupt", ""), idle],
      );

      // Act
      const { result: outcome } = await runCode(kernel, "import time; time.sleep(60)", {
        ...LIMITS,
        timeoutMs: 30,
      });

      // Assess
      assert.equal(kernel.interrupts, 1);
      assert.equal(outcome.status, "timeout");
      assert.equal(outcome.error?.ename, "TimeoutError");
      assert.match(outcome.error?.evalue ?? "", /exceeded 30 ms/);
      assert.deepEqual(
        outcome.error?.traceback,
        ["KeyboardInterrupt: "],
        "the interrupted traceback is kept",
      );
      assert.deepEqual(outcome.data, [{ "text/plain": "started\n" }], "what it showed before is kept");
    });

    it("ends with KernelStuckError, carrying what was shown, when the interrupt is ignored", async () => {
      // Prepare
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        input("while True: pass", k.count),
        stdout("spin\n"),
      ]);

      // Act
      const running = runCode(kernel, "while True: pass", { ...LIMITS, timeoutMs: 20, interruptGraceMs: 40 });

      // Assess
      await assert.rejects(running, (error: unknown) => {
        assert.ok(error instanceof KernelStuckError);
        assert.equal(error.partial.status, "timeout");
        assert.deepEqual(error.partial.data, [{ "text/plain": "spin\n" }]);
        assert.deepEqual(error.partial.artifacts, [], "no reply, so nothing measured");
        return true;
      });
      assert.equal(kernel.interrupts, 1);
    });

    it("is not stuck when the reply came within the grace but its idle was lost", async () => {
      // Prepare
      const kernel = new ScriptedKernel(
        (_, k) => [busy, input("slow()", k.count)],
        () => [replyError(1, "KeyboardInterrupt", "")],
      );

      // Act
      const { result: outcome } = await runCode(kernel, "slow()", {
        ...LIMITS,
        timeoutMs: 20,
        interruptGraceMs: 40,
      });

      // Assess
      assert.equal(outcome.status, "timeout");
    });

    it("ends at once with the transport's error when the kernel dies mid-run", async () => {
      // Prepare
      const kernel = new ScriptedKernel((_, k) => {
        setTimeout(() => k.die(new KernelDiedError("the kernel stopped answering heartbeats")), 10);
        return [busy, input("crash()", k.count)];
      });
      const started = Date.now();

      // Act
      const running = runCode(kernel, "crash()", LIMITS);

      // Assess
      await assert.rejects(running, KernelDiedError);
      assert.ok(Date.now() - started < LIMITS.timeoutMs / 2, "the run waited for its deadline");
      assert.equal(kernel.interrupts, 0);
    });

    it("ends with the caller's error when the caller signals the kernel is gone", async () => {
      // Prepare
      const kernel = new ScriptedKernel((_, k) => [busy, input("x", k.count)]);
      const gone = new AbortController();

      // Act
      const running = runCode(kernel, "x", { ...LIMITS, signal: gone.signal });
      setTimeout(() => gone.abort(new KernelDiedError("the kernel process has exited")), 10);

      // Assess
      await assert.rejects(running, /the kernel process has exited/);
    });

    it("hands back the files the run made, from its reply's payload, newest first", async () => {
      // Prepare
      const payload = artifactsPayload([
        ["chart.png", 20_731, NOON],
        ["out.csv", 11, NOON - 5],
      ]);
      const kernel = new ScriptedKernel((_, k) => [busy, idle, withPayload(replyOk(k.count), [payload])]);

      // Act
      const { result: outcome } = await runCode(kernel, "plt.savefig('chart.png')", LIMITS);

      // Assess
      assert.equal(outcome.status, "ok");
      assert.deepEqual(outcome.artifacts, [
        { path: "chart.png", size: 20_731, mtime: "2026-12-04T12:00:00.000Z" },
        { path: "out.csv", size: 11, mtime: "2026-12-04T11:59:59.995Z" },
      ]);
      assert.equal(outcome.artifactsTruncated, undefined);
      assert.deepEqual(kernel.requests[0]?.content.user_expressions, {}, "no expression of ours is needed");
    });

    it("says artifacts [] when the kernel reported none", async () => {
      // Prepare: a kernel without the tracker (payload []), and one whose run changed nothing
      const bare = new ScriptedKernel((_, k) => [busy, idle, replyOk(k.count)]);
      const quiet = new ScriptedKernel((_, k) => [
        busy,
        idle,
        withPayload(replyOk(k.count), [artifactsPayload([])]),
      ]);

      // Act
      const { result: first } = await runCode(bare, "1+1", LIMITS);
      const { result: second } = await runCode(quiet, "1+1", LIMITS);

      // Assess
      assert.deepEqual(first.artifacts, []);
      assert.deepEqual(second.artifacts, []);
    });

    it("reports the files of a run that raised, which ipykernel gives no user expressions", async () => {
      // Prepare
      const payload = artifactsPayload([["partial.csv", 3, NOON]]);
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        raised("ZeroDivisionError", "division by zero"),
        idle,
        withPayload(replyError(k.count, "ZeroDivisionError", "division by zero"), [payload]),
      ]);

      // Act
      const { result: outcome } = await runCode(kernel, "df.to_csv('partial.csv'); 1/0", LIMITS);

      // Assess
      assert.equal(outcome.status, "error");
      assert.deepEqual(
        outcome.artifacts.map((artifact) => artifact.path),
        ["partial.csv"],
      );
    });

    it("reports the files of a timed-out run whose kernel answered the interrupt", async () => {
      // Prepare
      const payload = artifactsPayload([["slow.txt", 1, NOON]]);
      const kernel = new ScriptedKernel(
        (_, k) => [busy, input("write(); sleep(60)", k.count)],
        () => [
          raised("KeyboardInterrupt", ""),
          withPayload(replyError(1, "KeyboardInterrupt", ""), [payload]),
          idle,
        ],
      );

      // Act
      const { result: outcome } = await runCode(kernel, "write(); sleep(60)", { ...LIMITS, timeoutMs: 20 });

      // Assess
      assert.equal(outcome.status, "timeout");
      assert.deepEqual(
        outcome.artifacts.map((artifact) => artifact.path),
        ["slow.txt"],
      );
    });

    it("passes the cap on: at most 100 artifacts, and artifactsTruncated", async () => {
      // Prepare
      const files = Array.from({ length: ARTIFACT_LIMIT }, (_, i): [string, number, number] => [
        `n${149 - i}.txt`,
        1,
        NOON - i,
      ]);
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        idle,
        withPayload(replyOk(k.count), [artifactsPayload(files, true)]),
      ]);

      // Act
      const { result: outcome } = await runCode(kernel, "make_150_files()", LIMITS);

      // Assess
      assert.equal(outcome.artifacts.length, ARTIFACT_LIMIT);
      assert.equal(outcome.artifacts[0]?.path, "n149.txt");
      assert.equal(outcome.artifactsTruncated, true);
    });

    it("runs on with artifacts [] when the kernel's report is malformed", async () => {
      // Prepare
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        result("2", k.count),
        idle,
        withPayload(replyOk(k.count), [{ source: ARTIFACTS_SOURCE, files: "chart.png" }]),
      ]);

      // Act
      const { result: outcome } = await runCode(kernel, "1+1", LIMITS);

      // Assess
      assert.equal(outcome.status, "ok");
      assert.deepEqual(outcome.data, [{ "text/plain": "2" }]);
      assert.deepEqual(outcome.artifacts, []);
    });

    it("sends nothing when the admission is refused", async () => {
      // Prepare
      const kernel = new ScriptedKernel(() => [busy, idle, replyOk(1)]);
      const refusal = new ValidationError("not yours");

      // Act
      const running = runCode(kernel, "1", { ...LIMITS, admitted: Promise.reject(refusal) });

      // Assess
      await assert.rejects(running, (error: unknown) => error === refusal);
      assert.equal(kernel.requests.length, 0);
    });
  });

  describe("runSilently", () => {
    it("sends a silent request that leaves the execution count alone, and gives what it printed", async () => {
      // Prepare: as ipykernel answers a silent request, with no execute_input and the count unchanged
      const kernel = new ScriptedKernel((request, k) =>
        request.content.silent
          ? [busy, stdout("/srv/work\n"), idle, replyOk(k.count)]
          : [busy, input(request.content.code, k.count), idle, replyOk(k.count)],
      );

      // Act
      const first = await runCode(kernel, "a = 1", LIMITS);
      const helper = await runSilently(kernel, "import os; print(os.getcwd())", { timeoutMs: 1_000 });
      const second = await runCode(kernel, "b = 2", LIMITS);

      // Assess
      const sent = kernel.requests[1]?.content;
      assert.equal(sent?.silent, true);
      assert.equal(sent?.store_history, false);
      assert.equal(helper.stdout, "/srv/work\n");
      assert.equal(first.result.executionCount, 1);
      assert.equal(second.result.executionCount, 2);
    });

    it("raises KernelCodeError, naming the exception, when the helper code raised", async () => {
      // Prepare
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        raised("FileNotFoundError", "[Errno 2] No such file or directory: '/nowhere'"),
        idle,
        replyError(k.count, "FileNotFoundError", "[Errno 2] No such file or directory: '/nowhere'"),
      ]);

      // Act
      const running = runSilently(kernel, "__import__('os').chdir('/nowhere')", { timeoutMs: 1_000 });

      // Assess
      await assert.rejects(running, (error: unknown) => {
        assert.ok(error instanceof KernelCodeError);
        assert.equal(error.error.ename, "FileNotFoundError");
        assert.deepEqual(error.error.traceback, [
          "FileNotFoundError: [Errno 2] No such file or directory: '/nowhere'",
        ]);
        return true;
      });
    });

    it("interrupts a helper that overruns and says the kernel did not answer in time", async () => {
      // Prepare
      const kernel = new ScriptedKernel(
        () => [busy],
        () => [raised("KeyboardInterrupt", ""), idle, replyError(0, "KeyboardInterrupt", "")],
      );

      // Act
      const running = runSilently(kernel, "slow()", { timeoutMs: 20 });

      // Assess
      await assert.rejects(running, /did not finish a helper request within 20 ms/);
      assert.equal(kernel.interrupts, 1);
    });
  });

  describe("evaluate", () => {
    it("gives the expression's value, carried as base64 JSON in a user expression", async () => {
      // Prepare
      const value = { cwd: "/srv/wörk", files: ["a.csv"] };
      const repr = `'${Buffer.from(JSON.stringify(value)).toString("base64")}'`;
      const kernel = new ScriptedKernel((request, k) => [
        busy,
        stdout("noise from another thread\n"),
        idle,
        replyOk(k.count, request.content.user_expressions.value ? { value: expressionRepr(repr) } : {}),
      ]);

      // Act
      const got = await evaluate(
        kernel,
        "{'cwd': os.getcwd(), 'files': os.listdir()}",
        z.object({ cwd: z.string(), files: z.array(z.string()) }),
        { code: "import os", timeoutMs: 1_000 },
      );

      // Assess
      assert.deepEqual(got, value);
      const sent = kernel.requests[0]?.content;
      assert.equal(sent?.code, "import os");
      assert.equal(sent?.silent, true);
      assert.match(sent?.user_expressions.value ?? "", /json"\)\.dumps\(\{'cwd'/);
    });

    it("raises KernelCodeError when the expression raised", async () => {
      // Prepare
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        idle,
        replyOk(k.count, {
          value: { status: "error", ename: "NameError", evalue: "name 'x' is not defined", traceback: [] },
        }),
      ]);

      // Act
      const running = evaluate(kernel, "x", z.number(), { timeoutMs: 1_000 });

      // Assess
      await assert.rejects(
        running,
        (error: unknown) => error instanceof KernelCodeError && error.error.ename === "NameError",
      );
    });

    it("raises BackendError when the value is not what the schema expects", async () => {
      // Prepare
      const repr = `'${Buffer.from(JSON.stringify("text")).toString("base64")}'`;
      const kernel = new ScriptedKernel((_, k) => [
        busy,
        idle,
        replyOk(k.count, { value: expressionRepr(repr) }),
      ]);

      // Act
      const running = evaluate(kernel, "'text'", z.number(), { timeoutMs: 1_000 });

      // Assess
      await assert.rejects(
        running,
        (error: unknown) => error instanceof BackendError && !(error instanceof KernelCodeError),
      );
    });
  });
});
