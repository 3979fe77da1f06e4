/**
 * The `/inspect` page in a real headless Chromium (Debian `chromium`,
 * npm `playwright-core`): it draws the tree, then shows a transition of a
 * real XState actor without reload. Saves a screenshot in a temp dir.
 * Skipped when /usr/bin/chromium is missing.
 */
import assert from "node:assert/strict";
import { chromium } from "../harness/npm/playwright_core.ts";
import { setup } from "xstate";
import { spawnActor, stopActor } from "../../actors/runtime/registry.ts";
import { createApp } from "../../http/app.ts";
import { serveApp } from "../../http/server.ts";
import { fakeDeps } from "../../http/testing.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

const breakerMachine = setup({
  types: { events: {} as { type: "FAIL" } | { type: "PROBE" } },
}).createMachine({
  id: "breaker",
  initial: "closed",
  states: {
    closed: { on: { FAIL: "open" } },
    open: { on: { PROBE: "halfOpen" } },
    halfOpen: {},
  },
});

Deno.test({
  name: "/inspect page shows the tree and a live transition without reload (headless Chromium)",
  async fn() {
    assert.ok(
      hasChromium,
      "this test needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); deno task test installs it",
    );
    const { deps } = fakeDeps();
    const server = await serveApp(createApp(deps), { port: 0 });
    spawnActor(setup({}).createMachine({ initial: "running", states: { running: {} } }), {
      id: "ui:supervisor",
      kind: "supervisor",
    });
    const breaker = spawnActor(breakerMachine, {
      id: "ui:circuit-breaker",
      kind: "breaker",
      parentId: "ui:supervisor",
      summary: () => ({ failures: 3, policy: "pause" }),
    });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    const dir = await Deno.makeTempDir({ prefix: "sluice-inspect-" });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      await page.goto(`http://127.0.0.1:${server.port}/inspect`);

      const row = page.locator('.row[data-id="ui:circuit-breaker"]');
      await row.locator(".state", { hasText: "closed" }).waitFor({ timeout: 10_000 });
      await page.locator("#conn", { hasText: "live" }).waitFor({ timeout: 10_000 });
      // The breaker is drawn under its supervisor.
      const nested = page.locator(
        'li:has(> .row[data-id="ui:supervisor"]) > ul .row[data-id="ui:circuit-breaker"]',
      );
      assert.equal(await nested.count(), 1);
      assert.match(await row.innerText(), /failures=3/);
      await page.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 42));

      breaker.send({ type: "FAIL" });
      await row.locator(".state.bad", { hasText: "open" }).waitFor({ timeout: 10_000 });
      const tr = page.locator('#transitions tr[data-actor="ui:circuit-breaker"]').first();
      await tr.waitFor({ timeout: 10_000 });
      assert.match(await tr.innerText(), /closed[\s\S]*open[\s\S]*FAIL/);
      const marker = await page.evaluate(() =>
        (globalThis as unknown as { marker?: number }).marker
      );
      assert.equal(marker, 42, "no reload happened");

      const shot = `${dir}/inspect.png`;
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok((await Deno.stat(shot)).size > 1000);
      console.log(`screenshot: ${shot}`);
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      stopActor("ui:circuit-breaker");
      stopActor("ui:supervisor");
      await server.shutdown();
    }
  },
});
