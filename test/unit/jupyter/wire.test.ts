import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { describe, it } from "node:test";
import { InvalidMessageError } from "../../../lib/errors.ts";
import { createMessage, type JupyterMessage, PROTOCOL_VERSION } from "../../../lib/jupyter/messages.ts";
import { DELIMITER, deserialize, serialize, sign } from "../../../lib/jupyter/wire.ts";

const KEY = "0f9c8e1a-secret";

/** The four JSON frames of a fixed message, written out by hand. */
const FIXED_HEADER =
  '{"msg_id":"m-1","msg_type":"execute_request","session":"s-1","username":"pybox","date":"2024-01-01T00:00:00.000Z","version":"5.3"}';
const FIXED_PARTS = [FIXED_HEADER, "{}", "{}", '{"code":"1+1"}'];
/** HMAC-SHA256 of FIXED_PARTS under KEY, computed once outside Node (Python `hmac` and `openssl dgst`). */
const FIXED_SIGNATURE = "fa4c53da07ec924719ce9add43787caa3421072909f5d9259f6c54ef65830a1e";

function fixedMessage(): JupyterMessage<{ code: string }> {
  return {
    header: {
      msg_id: "m-1",
      msg_type: "execute_request",
      session: "s-1",
      username: "pybox",
      date: "2024-01-01T00:00:00.000Z",
      version: "5.3",
    },
    parent_header: {},
    metadata: {},
    content: { code: "1+1" },
    buffers: [],
  };
}

/** A message as a kernel would send it: a reply with a parent, metadata and content. */
function kernelMessage(): JupyterMessage {
  return {
    header: {
      msg_id: "reply-1",
      msg_type: "execute_reply",
      session: "kernel-session",
      username: "kernel",
      date: "2024-01-01T00:00:01.000Z",
      version: "5.3",
    },
    parent_header: { msg_id: "m-1", msg_type: "execute_request", session: "s-1" },
    metadata: { started: "2024-01-01T00:00:00.500Z", dependencies_met: true },
    content: { status: "ok", execution_count: 3, user_expressions: {}, payload: [] },
    buffers: [],
  };
}

/** An independent HMAC-SHA256 over exactly the given frames, hex encoded. */
function hmacHex(key: string, frames: readonly Buffer[]): string {
  const hmac = createHmac("sha256", key);
  for (const frame of frames) hmac.update(frame);
  return hmac.digest("hex");
}

/** Frames whose signature is valid for KEY, whatever the four parts contain. */
function signedFrames(parts: readonly string[], identities: readonly Buffer[] = []): Buffer[] {
  const buffers = parts.map((part) => Buffer.from(part));
  return [...identities, DELIMITER, Buffer.from(hmacHex(KEY, buffers)), ...buffers];
}

function frameAt(frames: readonly Buffer[], index: number): Buffer {
  const frame = frames[index];
  assert.ok(frame, `expected a frame at index ${index}`);
  return frame;
}

describe("wire", () => {
  describe("sign", () => {
    it("matches the published HMAC-SHA256 vector, whatever way the input is split into parts", () => {
      // Prepare
      const whole = [Buffer.from("The quick brown fox jumps over the lazy dog")];
      const split = [
        Buffer.from("The quick brown "),
        Buffer.from("fox jumps over "),
        Buffer.from("the lazy dog"),
      ];

      // Act
      const ofWhole = sign("key", whole);
      const ofSplit = sign("key", split);

      // Assess
      assert.equal(ofWhole, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
      assert.equal(ofSplit, ofWhole);
    });

    it("matches the fixed vector for four Jupyter frames", () => {
      // Prepare
      const parts = FIXED_PARTS.map((part) => Buffer.from(part));

      // Act
      const signature = sign(KEY, parts);

      // Assess
      assert.equal(signature, FIXED_SIGNATURE);
    });

    it("matches an HMAC computed with node:crypto over the same frames", () => {
      // Prepare
      const parts = [Buffer.from('{"a":1}'), Buffer.from("{}"), Buffer.from('{"b":"é"}'), Buffer.from("{}")];

      // Act
      const signature = sign("another key", parts);

      // Assess
      assert.equal(signature, hmacHex("another key", parts));
      assert.match(signature, /^[0-9a-f]{64}$/);
    });

    it("depends on the key", () => {
      // Prepare
      const parts = FIXED_PARTS.map((part) => Buffer.from(part));

      // Act
      const signature = sign(`${KEY}x`, parts);

      // Assess
      assert.notEqual(signature, FIXED_SIGNATURE);
    });
  });

  describe("serialize", () => {
    it("writes the delimiter, the signature and the four JSON frames in protocol order", () => {
      // Prepare
      const message = fixedMessage();

      // Act
      const frames = serialize(message, KEY);

      // Assess
      assert.deepEqual(
        frames.map((frame) => frame.toString("utf8")),
        ["<IDS|MSG>", FIXED_SIGNATURE, ...FIXED_PARTS],
      );
    });

    it("signs exactly the four JSON frames it writes", () => {
      // Prepare
      const message = kernelMessage();

      // Act
      const frames = serialize(message, KEY);

      // Assess
      assert.equal(frames.length, 6);
      assert.equal(frameAt(frames, 1).toString("utf8"), hmacHex(KEY, frames.slice(2, 6)));
    });

    it("appends binary buffers after the content frame, unsigned", () => {
      // Prepare
      const message = { ...fixedMessage(), buffers: [Buffer.from([0, 1, 2, 255]), Buffer.alloc(0)] };

      // Act
      const frames = serialize(message, KEY);

      // Assess
      assert.equal(frames.length, 8);
      assert.equal(frameAt(frames, 1).toString("utf8"), FIXED_SIGNATURE);
      assert.deepEqual(frameAt(frames, 6), Buffer.from([0, 1, 2, 255]));
      assert.deepEqual(frameAt(frames, 7), Buffer.alloc(0));
    });
  });

  describe("deserialize", () => {
    it("reads back what serialize wrote", () => {
      // Prepare
      const message = kernelMessage();
      const frames = serialize(message, KEY);

      // Act
      const decoded = deserialize(frames, KEY);

      // Assess
      assert.deepEqual(decoded, message);
    });

    it("skips routing identities before the delimiter, as a ROUTER socket delivers them", () => {
      // Prepare
      const message = kernelMessage();
      const identities = [Buffer.from([0, 0x80, 0, 0x41, 0xa7]), Buffer.from("client-42")];
      const frames = [...identities, ...serialize(message, KEY)];

      // Act
      const decoded = deserialize(frames, KEY);

      // Assess
      assert.deepEqual(decoded, message);
    });

    it("skips the topic frame a SUB socket delivers before the delimiter", () => {
      // Prepare
      const message = { ...kernelMessage(), content: { name: "stdout", text: "1\n" } };
      message.header = { ...message.header, msg_type: "stream" };
      const frames = [Buffer.from("kernel.abc.stream"), ...serialize(message, KEY)];

      // Act
      const decoded = deserialize(frames, KEY);

      // Assess
      assert.equal(decoded.header.msg_type, "stream");
      assert.deepEqual(decoded.content, { name: "stdout", text: "1\n" });
      assert.deepEqual(decoded.buffers, []);
    });

    it("returns trailing binary buffers unchanged", () => {
      // Prepare
      const binary = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00]);
      const message = { ...kernelMessage(), buffers: [binary, Buffer.from("second")] };
      const frames = [Buffer.from("identity"), ...serialize(message, KEY)];

      // Act
      const decoded = deserialize(frames, KEY);

      // Assess
      assert.deepEqual(decoded.buffers, [binary, Buffer.from("second")]);
      assert.deepEqual(decoded.content, message.content);
    });

    it("accepts frames signed independently of serialize", () => {
      // Prepare
      const frames = [
        DELIMITER,
        Buffer.from(FIXED_SIGNATURE),
        ...FIXED_PARTS.map((part) => Buffer.from(part)),
      ];

      // Act
      const decoded = deserialize(frames, KEY);

      // Assess
      assert.deepEqual(decoded, fixedMessage());
    });

    it("rejects a message signed with another key", () => {
      // Prepare
      const frames = serialize(kernelMessage(), "not the kernel's key");

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, (error: unknown) => {
        assert.ok(error instanceof InvalidMessageError);
        assert.equal(error.message, "kernel message signature is invalid");
        return true;
      });
    });

    it("rejects a message whose content frame was changed after signing", () => {
      // Prepare
      const frames = serialize(kernelMessage(), KEY);
      frames[5] = Buffer.from(
        JSON.stringify({ status: "ok", execution_count: 4, user_expressions: {}, payload: [] }),
      );

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, { name: "InvalidMessageError", message: "kernel message signature is invalid" });
    });

    it("rejects a message whose header frame was changed after signing", () => {
      // Prepare
      const frames = serialize(kernelMessage(), KEY);
      frames[2] = Buffer.from(JSON.stringify({ ...kernelMessage().header, msg_type: "shutdown_reply" }));

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, { name: "InvalidMessageError", message: "kernel message signature is invalid" });
    });

    it("rejects a message with an empty signature", () => {
      // Prepare
      const frames = serialize(kernelMessage(), KEY);
      frames[1] = Buffer.alloc(0);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, { name: "InvalidMessageError", message: "kernel message signature is invalid" });
    });

    it("rejects a message whose signature is in upper case hex", () => {
      // Prepare
      const frames = serialize(kernelMessage(), KEY);
      frames[1] = Buffer.from(frameAt(frames, 1).toString("utf8").toUpperCase());

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, { name: "InvalidMessageError", message: "kernel message signature is invalid" });
    });

    it("rejects a message whose signature frame is missing", () => {
      // Prepare
      const frames = serialize(kernelMessage(), KEY);
      frames.splice(1, 1);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, {
        name: "InvalidMessageError",
        message: "kernel message is missing its delimiter or parts",
      });
    });

    it("rejects frames without the delimiter", () => {
      // Prepare
      const frames = serialize(kernelMessage(), KEY).slice(1);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, {
        name: "InvalidMessageError",
        message: "kernel message is missing its delimiter or parts",
      });
    });

    it("rejects frames that stop before the content frame", () => {
      // Prepare
      const frames = serialize(kernelMessage(), KEY).slice(0, 5);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, {
        name: "InvalidMessageError",
        message: "kernel message is missing its delimiter or parts",
      });
    });

    it("rejects no frames at all", () => {
      // Prepare
      const frames: Buffer[] = [];

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, {
        name: "InvalidMessageError",
        message: "kernel message is missing its delimiter or parts",
      });
    });

    it("rejects a correctly signed part that is not JSON, keeping the parse error as cause", () => {
      // Prepare
      const frames = signedFrames([FIXED_HEADER, "{}", "{}", "{not json"]);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, (error: unknown) => {
        assert.ok(error instanceof InvalidMessageError);
        assert.equal(error.message, "kernel message part is not JSON");
        assert.ok(error.cause instanceof SyntaxError);
        return true;
      });
    });

    it("rejects a correctly signed part that is JSON but not an object", () => {
      // Prepare
      const cases = ["[]", "null", '"text"', "42"];

      for (const part of cases) {
        // Act
        const act = () => deserialize(signedFrames([FIXED_HEADER, "{}", part, "{}"]), KEY);

        // Assess
        assert.throws(
          act,
          { name: "InvalidMessageError", message: "kernel message part is not a JSON object" },
          part,
        );
      }
    });

    it("rejects a correctly signed header that lacks msg_id", () => {
      // Prepare
      const header = JSON.stringify({
        msg_type: "status",
        session: "s",
        username: "u",
        date: "d",
        version: "5.3",
      });
      const frames = signedFrames([header, "{}", "{}", '{"execution_state":"idle"}']);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, {
        name: "InvalidMessageError",
        message: "kernel message header lacks msg_id or msg_type",
      });
    });

    it("rejects a correctly signed header whose msg_id is not a string", () => {
      // Prepare
      const header = JSON.stringify({ msg_id: 7, msg_type: "status" });
      const frames = signedFrames([header, "{}", "{}", "{}"]);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, {
        name: "InvalidMessageError",
        message: "kernel message header lacks msg_id or msg_type",
      });
    });

    it("rejects a correctly signed header that lacks msg_type", () => {
      // Prepare
      const header = JSON.stringify({ msg_id: "m-9", session: "s" });
      const frames = signedFrames([header, "{}", "{}", "{}"]);

      // Act
      const act = () => deserialize(frames, KEY);

      // Assess
      assert.throws(act, {
        name: "InvalidMessageError",
        message: "kernel message header lacks msg_id or msg_type",
      });
    });
  });
});

describe("messages", () => {
  describe("createMessage", () => {
    it("fills the header for the protocol version with an empty parent and metadata", () => {
      // Prepare
      const content = { code: "1+1" };

      // Act
      const message = createMessage("execute_request", content, "session-1");

      // Assess
      assert.equal(message.header.msg_type, "execute_request");
      assert.equal(message.header.session, "session-1");
      assert.equal(message.header.username, "pybox");
      assert.equal(message.header.version, PROTOCOL_VERSION);
      assert.match(
        message.header.msg_id,
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      assert.equal(new Date(message.header.date).toISOString(), message.header.date);
      assert.deepEqual(message.parent_header, {});
      assert.deepEqual(message.metadata, {});
      assert.deepEqual(message.content, { code: "1+1" });
      assert.deepEqual(message.buffers, []);
    });

    it("gives every message a fresh msg_id, so equal requests never share a signature", () => {
      // Prepare
      const content = { code: "print(1)" };

      // Act
      const first = createMessage("execute_request", content, "session-1");
      const second = createMessage("execute_request", content, "session-1");

      // Assess
      assert.notEqual(first.header.msg_id, second.header.msg_id);
      assert.notEqual(
        frameAt(serialize(first, KEY), 1).toString(),
        frameAt(serialize(second, KEY), 1).toString(),
      );
    });

    it("never repeats a msg_id over many messages", () => {
      // Prepare
      const count = 1_000;

      // Act
      const ids = new Set(
        Array.from({ length: count }, () => createMessage("kernel_info_request", {}, "s").header.msg_id),
      );

      // Assess
      assert.equal(ids.size, count);
    });
  });
});
