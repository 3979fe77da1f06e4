/**
 * Issue 8 in a real browser (Debian `chromium`, npm `playwright-core`)
 * against a real sluice process in local mode:
 *
 * - `/inspect` shows one partition actor per assigned partition and the
 *   breaker's state;
 * - the dashboard `/` shows throughput rising and the breaker closed;
 * - the dashboard's "Fail 100%" button (`PUT /control/upstream
 *   {errorRate: 1}`) opens the breaker, and both pages show it without
 *   reload; "Heal" closes it again.
 *
 * Screenshots go to a temp dir (paths printed).
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "../harness/npm/playwright_core.ts";
import { waitFor } from "../harness/procs.ts";
import { type SluiceProcess, startSluiceProcess } from "../harness/sluice_process.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

interface Status {
  circuit: string;
  partitions: Array<{ topic: string; partition: number }>;
  upstream_sim: { errorRate: number };
}

function watchErrors(page: Page, into: string[]): void {
  page.on("pageerror", (e) => into.push(`${page.url()}: ${e}`));
  page.on("console", (m) => m.type() === "error" && into.push(`${page.url()}: ${m.text()}`));
}

const num = async (page: Page, sel: string) => Number(await page.locator(sel).innerText());

Deno.test("browser: /inspect and the dashboard follow the real pipeline; the breaker opens from the dashboard without reload", async () => {
  const proc: SluiceProcess = await startSluiceProcess({
    env: {
      SLUICE_MAX_RETRIES: "0",
      SLUICE_BREAKER_VOLUME: "5",
      SLUICE_BREAKER_RESET_MS: "3000",
      SLUICE_BREAKER_WINDOW_MS: "3000",
      SLUICE_AUDIT_BATCH_AGE_MS: "500",
    },
  });
  let browser: Browser | undefined;
  const dir = await Deno.makeTempDir({ prefix: "sluice-e2e-browser-" });
  const errors: string[] = [];
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    const status = () => proc.json("/status") as Promise<Status>;
    await waitFor(async () => (await status()).partitions.length > 0, {
      timeoutMs: 10_000,
      message: "partitions assigned",
    });
    const parts = (await status()).partitions;

    // ---- /inspect: one actor per assigned partition, breaker closed.
    const inspect = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    watchErrors(inspect, errors);
    await inspect.goto(`${proc.url}/inspect`);
    await inspect.locator("#conn", { hasText: "live" }).waitFor({ timeout: 10_000 });
    const breakerRow = inspect.locator('.row[data-id="circuit-breaker"]');
    await breakerRow.locator(".state", { hasText: "closed" }).waitFor({ timeout: 10_000 });
    const partitionRows = inspect.locator('.row[data-id^="partition:"]');
    await waitFor(async () => (await partitionRows.count()) === parts.length, {
      timeoutMs: 10_000,
      message: `${parts.length} partition actors on /inspect`,
    });
    for (const p of parts) {
      const row = inspect.locator(`.row[data-id="partition:${p.topic}:${p.partition}"]`);
      assert.equal(await row.count(), 1, `partition ${p.topic}:${p.partition} on /inspect`);
      assert.match(await row.locator(".state").innerText(), /running/);
    }
    await inspect.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 1));

    // ---- Dashboard: throughput rising, breaker closed, events flowing.
    const dash = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    watchErrors(dash, errors);
    await dash.goto(`${proc.url}/`);
    await dash.locator("#conn", { hasText: "live" }).waitFor({ timeout: 10_000 });
    await dash.locator('#circuit[data-state="closed"]').waitFor({ timeout: 10_000 });
    await dash.locator("#ready", { hasText: "READY" }).waitFor({ timeout: 10_000 });
    await dash.evaluate(() => ((globalThis as unknown as { marker: number }).marker = 2));
    // From the dashboard's own control: load 20 → 80 records/s.
    await waitFor(async () => (await num(dash, "#tp-delivered")) > 5, {
      timeoutMs: 10_000,
      message: "dashboard throughput > 5/s",
    });
    const before = await num(dash, "#tp-delivered");
    await dash.locator("#load-rate").fill("80");
    await dash.locator("#apply-load").click();
    // Above 50/s: only the new load (80/s) gets there from 20/s. Not relative to `before`:
    // a catch-up burst read as `before` (38/s seen on a loaded machine) asked for more than 76/s.
    await waitFor(async () => (await num(dash, "#tp-delivered")) > 50, {
      timeoutMs: 15_000,
      message: "dashboard throughput rising above 50/s",
    });
    const after = await num(dash, "#tp-delivered");
    console.log(`dashboard throughput: ${before}/s → ${after}/s`);
    await dash.locator('#events tr[data-type="record.completed"]').first().waitFor({
      timeout: 5000,
    });
    assert.notEqual(await dash.locator("#p50").innerText(), "–", "latency p50 shown");
    const shotClosed = `${dir}/dashboard-closed.png`;
    await dash.screenshot({ path: shotClosed, fullPage: true });

    // ---- Open the breaker from the dashboard ("Fail 100%" → PUT /control/upstream).
    const t0 = performance.now();
    await dash.locator("#break").click();
    await dash.locator("#ctlmsg", { hasText: "✓ PUT /control/upstream" }).waitFor({
      timeout: 5000,
    });
    assert.equal((await status()).upstream_sim.errorRate, 1);
    await dash.locator('#circuit[data-state="open"]').waitFor({ timeout: 15_000 });
    const openMs = Math.round(performance.now() - t0);
    await dash.locator("#banner", { hasText: "Circuit breaker OPEN" }).waitFor({ timeout: 5000 });
    await dash.locator('#events tr[data-type="circuit.changed"]').first().waitFor({
      timeout: 5000,
    });
    await breakerRow.locator(".state.bad", { hasText: "open" }).waitFor({ timeout: 10_000 });
    const tr = inspect.locator('#transitions tr[data-actor="circuit-breaker"]').first();
    await tr.waitFor({ timeout: 5000 });
    assert.match(await tr.innerText(), /closed[\s\S]*open/);
    console.log(`breaker open on the dashboard ${openMs} ms after the click`);
    const shotDashOpen = `${dir}/dashboard-open.png`;
    const shotInspectOpen = `${dir}/inspect-open.png`;
    await dash.screenshot({ path: shotDashOpen, fullPage: true });
    await inspect.screenshot({ path: shotInspectOpen }); // the viewport: the transitions list is long

    // ---- Heal from the dashboard: the breaker closes again (after its 3 s reset).
    await dash.locator("#heal").click();
    await dash.locator('#circuit[data-state="closed"]').waitFor({ timeout: 20_000 });
    await breakerRow.locator(".state", { hasText: "closed" }).waitFor({ timeout: 10_000 });
    assert.equal((await status()).circuit, "closed");

    // Neither page reloaded.
    assert.equal(
      await inspect.evaluate(() => (globalThis as unknown as { marker?: number }).marker),
      1,
    );
    assert.equal(
      await dash.evaluate(() => (globalThis as unknown as { marker?: number }).marker),
      2,
    );
    for (const shot of [shotClosed, shotDashOpen, shotInspectOpen]) {
      assert.ok((await Deno.stat(shot)).size > 10_000);
      console.log(`screenshot: ${shot}`);
    }
    assert.deepEqual(errors, []);
  } catch (e) {
    console.error(`--- sluice output ---\n${proc.output().slice(-6000)}`);
    throw e;
  } finally {
    await browser?.close();
    const killer = setTimeout(() => proc.stop("SIGKILL"), 20_000);
    const code = await proc.stop("SIGTERM");
    clearTimeout(killer);
    assert.equal(code, 0);
  }
});
