import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");

/** Every `.ts` file under `dir`, as paths relative to the repository root. */
async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(join(ROOT, dir), { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => relative(ROOT, join(entry.parentPath, entry.name)))
    .sort();
}

/** The project files a source imports (statically, dynamically or for types), relative to the root. */
function importsOf(file: string, text: string): string[] {
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g)].map(
    (match) => match[1] ?? "",
  );
  return specifiers.map((specifier) => relative(ROOT, resolve(ROOT, dirname(file), specifier)));
}

/** One import circle among `graph`'s files, or undefined when there is none. */
function findCircle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (file: string): string[] | undefined => {
    if (state.get(file) === "done") return undefined;
    if (state.get(file) === "open") return [...path.slice(path.indexOf(file)), file];
    state.set(file, "open");
    path.push(file);
    for (const next of graph.get(file) ?? []) {
      const circle = visit(next);
      if (circle) return circle;
    }
    path.pop();
    state.set(file, "done");
    return undefined;
  };
  for (const file of graph.keys()) {
    const circle = visit(file);
    if (circle) return circle;
  }
  return undefined;
}

describe("the layout", () => {
  it("has no import circle in lib/ and functions/, type imports included", async () => {
    // Prepare
    const files = [...(await sources("lib")), ...(await sources("functions"))];
    const graph = new Map<string, string[]>();
    for (const file of files) {
      const text = await readFile(join(ROOT, file), "utf8");
      graph.set(
        file,
        importsOf(file, text).filter((target) => files.includes(target)),
      );
    }

    // Act
    const circle = findCircle(graph);

    // Assess
    assert.ok(graph.size > 40, "the files were read");
    assert.ok([...graph.values()].flat().length > 100, "their imports were read");
    assert.equal(circle, undefined, `import circle: ${circle?.join(" → ")}`);
  });

  it("keeps every file under lib/ within about 400 lines", async () => {
    for (const file of await sources("lib")) {
      // Act
      const lines = (await readFile(join(ROOT, file), "utf8")).split("\n").length;

      // Assess
      assert.ok(lines <= 420, `${file} has ${lines} lines`);
    }
  });

  it("finds a circle when there is one (the check itself)", () => {
    // Prepare
    const graph = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts"]],
    ]);

    // Assess
    assert.deepEqual(findCircle(graph), ["a.ts", "b.ts", "c.ts", "a.ts"]);
    assert.equal(findCircle(new Map([["a.ts", ["b.ts"]]])), undefined);
  });
});
