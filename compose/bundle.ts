/**
 * (Kept in compose/ with the other packaging files: it builds what is shipped.)
 *
 * `deno task bundle`: `deno bundle` of main.ts into `dist/sluice.js`, one
 * JavaScript file with every npm dependency inlined, then one pass over it:
 * characters above U+00FF in comments are written as `\uXXXX`.
 *
 * Why: V8 keeps the source of every script it runs (functions compile
 * lazily), one byte per character when every character is Latin-1, else two.
 * The bundle is one 7 MB script, and ten characters in comments (an arrow, a
 * dash, a typographic apostrophe in sluice's and its dependencies' doc
 * comments) made V8 hold all of it at two bytes per character: 7 MB more heap
 * in every instance run from the single file (README: Single file and binary).
 * Only comment lines are rewritten (the text before the character, on its
 * line, starts with `//`, `/*` or `*`), where `\uXXXX` changes nothing; any
 * other such character is left as it is and reported, and
 * `tests/e2e/bundle_test.ts` fails on it.
 *
 * ```
 * deno task bundle   # → dist/sluice.js
 * ```
 *
 * @module
 */
const root = new URL("..", import.meta.url).pathname;
const output = `${root}dist/sluice.js`;

if (import.meta.main) {
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--platform",
      "deno",
      "--packages",
      "bundle",
      "--output",
      output,
      `${root}main.ts`,
    ],
    cwd: root,
    stdin: "null",
  }).spawn().status;
  if (!built.success) Deno.exit(built.code || 1);

  const { text, escaped, left } = latin1Comments(await Deno.readTextFile(output));
  await Deno.writeTextFile(output, text);
  console.error(
    `deno task bundle: ${escaped} character(s) above U+00FF in comments written as \\uXXXX`,
  );
  for (const where of left) {
    console.error(`deno task bundle: a character above U+00FF outside a comment: ${where}`);
  }
}

/**
 * `source` with every character above U+00FF on a comment line written as
 * `\uXXXX` (UTF-16 code units); `left` names those it could not place in a
 * comment.
 */
export function latin1Comments(source: string): { text: string; escaped: number; left: string[] } {
  let escaped = 0;
  const left: string[] = [];
  const text = source.replace(/[\u0100-\uffff]/g, (ch, offset: number) => {
    const lineStart = source.lastIndexOf("\n", offset - 1) + 1;
    const before = source.slice(lineStart, offset).trimStart();
    if (before.startsWith("//") || before.startsWith("/*") || before.startsWith("*")) {
      escaped++;
      return `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`;
    }
    left.push(JSON.stringify(source.slice(Math.max(0, offset - 40), offset + 10)));
    return ch;
  });
  return { text, escaped, left };
}
