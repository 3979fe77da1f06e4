/**
 * (Kept in compose/ with the other packaging files: it builds what is shipped.)
 *
 * `deno task compile`: `deno compile` of main.ts into `dist/sluice`, one
 * executable with the Deno runtime inside.
 *
 * `deno compile` joins the program to `denort`, Deno's runtime without the
 * tooling, of the very same version as the `deno` running it (here
 * {@link Deno.version}). It takes it, in this order, from:
 *
 * 1. `DENORT_BIN`: a path to a `denort` binary of that version
 *    (unzipped `denort-<target>.zip` of the Deno release);
 * 2. the Deno cache: `$DENO_DIR/dl/release/v<version>/denort-<target>.zip`;
 * 3. a download from dl.deno.land (machines without that access fail here).
 *
 * This script checks 1 and 2 (and whether 3 is reachable) first, and when
 * none can work stops with a message that says what to provide instead of
 * `deno compile`'s network error. Where no `denort` can be had, `deno task
 * bundle` makes the single-file JavaScript build (`dist/sluice.js`), which
 * any `deno` of the same version runs with an empty cache and `--no-remote`.
 *
 * ```
 * DENORT_BIN=/opt/denort deno task compile   # → dist/sluice
 * deno task compile -- --target x86_64-unknown-linux-gnu
 * ```
 *
 * @module
 */
const root = new URL("..", import.meta.url).pathname;
/** The `--v8-flags=…` of `deno task start` (deno.json), baked into the binary too. */
const START_V8_FLAGS: string[] =
  (JSON.parse(Deno.readTextFileSync(`${root}deno.json`)).tasks.start as string)
    .match(/--v8-flags=\S+/g) ?? [];
const version = Deno.version.deno;
const target = Deno.args.includes("--target")
  ? Deno.args[Deno.args.indexOf("--target") + 1]
  : Deno.build.target;
const zip = `denort-${target}.zip`;

function fail(message: string): never {
  console.error(`deno task compile: ${message}`);
  Deno.exit(1);
}

async function denoDir(): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout)).denoDir;
}

async function reachable(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(5000) });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

const denortBin = Deno.env.get("DENORT_BIN");
let source: string;
if (denortBin) {
  try {
    if (!Deno.statSync(denortBin).isFile) throw new Error("not a file");
  } catch {
    fail(`DENORT_BIN=${denortBin} is not a file: point it at the unzipped denort binary`);
  }
  source = `DENORT_BIN=${denortBin}`;
} else {
  const cached = `${await denoDir()}/dl/release/v${version}/${zip}`;
  const url = `https://dl.deno.land/release/v${version}/${zip}`;
  if (
    (() => {
      try {
        return Deno.statSync(cached).isFile;
      } catch {
        return false;
      }
    })()
  ) {
    source = cached;
  } else if (await reachable(url)) {
    source = url;
  } else {
    fail([
      `deno compile needs denort ${version} for ${target}, and this machine cannot download it`,
      `(${url} is not reachable). Provide it with one of:`,
      `  - DENORT_BIN=/path/to/denort deno task compile   (the unzipped ${zip} of Deno v${version})`,
      `  - put ${zip} at ${cached}`,
      `Without it, \`deno task bundle\` builds the single-file dist/sluice.js (run it with`,
      `\`deno run -A --unstable-kv --no-remote dist/sluice.js\`).`,
    ].join("\n"));
  }
}

console.error(`compiling main.ts into dist/sluice (runtime: ${source})`);
const extra = Deno.args.includes("--target") ? ["--target", target] : [];
const status = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    "--allow-all",
    "--unstable-kv",
    "--no-remote",
    // The same V8 flags as `deno task start` (README, Benchmarks: memory).
    ...START_V8_FLAGS,
    ...extra,
    "--output",
    `${root}dist/sluice`,
    `${root}main.ts`,
  ],
  cwd: root,
  stdout: "inherit",
  stderr: "inherit",
}).spawn().status;
if (!status.success) fail(`deno compile failed (exit ${status.code}); runtime was ${source}`);
console.error("built dist/sluice; try: dist/sluice --version");
