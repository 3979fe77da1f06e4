/**
 * The A/B runner of the in-process comparisons (`tests/bench/undici_assert_ab.ts`,
 * `tests/bench/upstream_ab.ts`): two sides, each run as a child process of
 * the calling script (with the start task's V8 flags), alternated round by
 * round (a, b; then b, a) so the machine's drift hits both alike. A child
 * prints one number (its CPU ms per 1,000 operations) as its last line.
 *
 * @module
 */

/** One side: its name, the child's arguments after the script, its working directory. */
export interface Side {
  name: string;
  args: string[];
  cwd?: string;
}

/** Median of `xs`. */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/**
 * Runs `script` once per side and round, alternating; prints each round
 * (`unit`: what the figures are). Returns each side's figures, in round order.
 */
export async function alternate(
  script: string,
  sides: [Side, Side],
  rounds: number,
  unit: string,
): Promise<[number[], number[]]> {
  const out: [number[], number[]] = [[], []];
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [0, 1] as const : [1, 0] as const;
    const line: string[] = [];
    for (const i of order) {
      const side = sides[i];
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--lock=tests/deno.lock",
          // the start task's V8 flags
          "--v8-flags=--max-semi-space-size=2,--memory-balancer",
          script,
          ...side.args,
        ],
        cwd: side.cwd,
        stdout: "piped",
        stderr: "inherit",
      }).output();
      const ms = Number(new TextDecoder().decode(run.stdout).trim().split("\n").at(-1));
      if (!run.success || !Number.isFinite(ms)) throw new Error(`the ${side.name} child failed`);
      out[i].push(ms);
      line.push(`${side.name} ${ms.toFixed(1)}`);
    }
    console.log(`round ${r + 1}: ${line.join(", ")} ${unit}`);
  }
  return out;
}
