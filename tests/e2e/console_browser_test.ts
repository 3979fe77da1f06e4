/**
 * The operator's console in headless Chromium (Debian `chromium`, npm
 * `playwright-core`) against a real sluice in local mode (issue 15):
 *
 * - dashboard: an incident (breaker open, drain) that happened before the
 *   page was opened is on the chart and in the period list; it survives a
 *   reload; readiness shows DEGRADED while the breaker is open; no
 *   horizontal scroll at 390 px;
 * - DLQ panel: the list shows dead letters; one opens with its payload and
 *   headers; its replay button replays that one letter and the list says it
 *   was delivered since; a trace id opens that record's audit timeline;
 * - inspector: the breaker's statechart (drawn from the XState machine)
 *   shows closed, open and halfOpen with the current one lit, and follows
 *   changes without reload; internal events are collapsed; no horizontal
 *   scroll at 390 px.
 *
 * Screenshots go to `test-artifacts/screenshots/` (`SLUICE_TEST_ARTIFACTS`
 * to change it); their paths are printed.
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "../harness/npm/playwright_core.ts";
import { waitFor } from "../harness/procs.ts";
import { type SluiceProcess, startSluiceProcess } from "../harness/sluice_process.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"];
const ARTIFACTS = Deno.env.get("SLUICE_TEST_ARTIFACTS") ??
  new URL("../../test-artifacts/screenshots", import.meta.url).pathname;

interface Status {
  circuit: string;
  pause_reasons: string[];
}

function watchErrors(page: Page, into: string[]): void {
  page.on("pageerror", (e) => into.push(`${page.url()}: ${e}`));
  page.on("console", (m) => m.type() === "error" && into.push(`${page.url()}: ${m.text()}`));
}

async function shot(page: Page, name: string, fullPage = true): Promise<string> {
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const path = `${ARTIFACTS}/${name}.png`;
  if (fullPage) await page.evaluate("window.scrollTo(0, 0)");
  await page.screenshot({ path, fullPage });
  assert.ok((await Deno.stat(path)).size > 5_000, `${path} has content`);
  console.log(`screenshot: ${path}`);
  return path;
}

async function noHorizontalScroll(page: Page): Promise<void> {
  // Evaluated in the page (a string: Deno's type-check has no DOM).
  const [sw, iw] = await page.evaluate(
    "[document.documentElement.scrollWidth, window.innerWidth]",
  ) as [number, number];
  assert.ok(sw <= iw, `no horizontal scroll: scrollWidth ${sw} > ${iw}`);
}

async function put(proc: SluiceProcess, path: string, body: unknown): Promise<void> {
  await proc.json(path, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

async function withConsole(
  fn: (proc: SluiceProcess, browser: Browser, errors: string[]) => Promise<void>,
): Promise<void> {
  const proc = await startSluiceProcess({
    env: {
      SLUICE_MAX_RETRIES: "0",
      SLUICE_BREAKER_VOLUME: "5",
      SLUICE_BREAKER_RESET_MS: "3000",
      SLUICE_BREAKER_WINDOW_MS: "3000",
      SLUICE_AUDIT_BATCH_AGE_MS: "300",
    },
  });
  let browser: Browser | undefined;
  const errors: string[] = [];
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    await fn(proc, browser, errors);
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
}

/** Fails the simulated upstream until the breaker opens, then heals it and waits for closed. */
async function incident(proc: SluiceProcess, opts: { drain?: boolean } = {}): Promise<void> {
  const status = () => proc.json("/status") as Promise<Status>;
  await put(proc, "/control/upstream", { errorRate: 1 });
  await waitFor(async () => (await status()).circuit === "open", {
    timeoutMs: 20_000,
    message: "breaker open",
  });
  if (opts.drain) {
    await proc.json("/control/drain", { method: "POST" });
    await new Promise((r) => setTimeout(r, 2500));
    await proc.json("/control/resume", { method: "POST" });
  }
  await put(proc, "/control/upstream", { errorRate: 0 });
  await waitFor(async () => (await status()).circuit === "closed", {
    timeoutMs: 20_000,
    message: "breaker closed again",
  });
}

Deno.test("browser: the dashboard remembers an incident it did not see (server history), survives a reload, shows DEGRADED, fits 390 px", async () => {
  await withConsole(async (proc, browser, errors) => {
    // The incident happens with no page open.
    await incident(proc, { drain: true });
    await new Promise((r) => setTimeout(r, 1500));

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    watchErrors(page, errors);
    await page.goto(`${proc.url}/`);
    const chart = page.locator("#chart");
    await waitFor(async () => Number(await chart.getAttribute("data-periods")) >= 2, {
      timeoutMs: 10_000,
      message: "periods loaded from /dashboard/history",
    });
    for (const kind of ["breaker_open", "drained"]) {
      await page.locator(`#periods li[data-kind="${kind}"]`).first().waitFor({ timeout: 5000 });
    }
    const openText = await page.locator('#periods li[data-kind="breaker_open"]').first()
      .innerText();
    assert.match(openText, /breaker open: \d\d:\d\d:\d\d → \d\d:\d\d:\d\d UTC/);
    assert.match(await page.locator("#updated").innerText(), /UTC$/);
    const samples = Number(await chart.getAttribute("data-samples"));
    assert.ok(samples >= 3, `${samples} samples from before the page was opened`);
    await shot(page, "dashboard-after-incident");

    // A reload shows the same incident (nothing lived in the page).
    await page.reload();
    await page.locator('#periods li[data-kind="breaker_open"]').first().waitFor({
      timeout: 10_000,
    });
    assert.equal(
      await page.locator('#periods li[data-kind="breaker_open"]').first().innerText(),
      openText,
    );

    // Live: DEGRADED while the breaker is open, READY again after.
    await put(proc, "/control/upstream", { errorRate: 1 });
    await page.locator('#ready[data-health="degraded"]', { hasText: "DEGRADED" }).waitFor({
      timeout: 20_000,
    });
    assert.match(await page.locator("#ready").innerText(), /circuit breaker (open|half-open)/);
    await shot(page, "dashboard-degraded-breaker-open");
    await put(proc, "/control/upstream", { errorRate: 0 });
    await page.locator('#ready[data-health="ready"]').waitFor({ timeout: 20_000 });

    // A phone.
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    watchErrors(phone, errors);
    await phone.goto(`${proc.url}/`);
    await phone.locator('#periods li[data-kind="breaker_open"]').first().waitFor({
      timeout: 10_000,
    });
    await noHorizontalScroll(phone);
    await shot(phone, "dashboard-390px");
  });
});

interface DlqItem {
  id: string;
  delivered_since: boolean;
  original_partition: number;
  original_offset: string;
}

Deno.test("browser: the DLQ panel lists dead letters, opens one (payload, headers), replays that one, the list and the events follow; its trace id opens the audit timeline", async () => {
  await withConsole(async (proc, browser, errors) => {
    // Dead letters: records failing while most others succeed (30 % of calls answered 500).
    // A 503 says "unavailable", and an upstream failing every call is an outage: such records
    // wait, none is dead-lettered.
    const list = async () => ((await proc.json("/dlq?limit=1000")) as { items: DlqItem[] }).items;
    await put(proc, "/control/upstream", { errorRate: 0.3, errorStatus: 500 });
    await waitFor(async () => (await list()).length >= 3, {
      timeoutMs: 30_000,
      message: "dead letters while 30 % of calls fail",
    });
    await put(proc, "/control/upstream", { errorRate: 0 });
    await waitFor(async () => ((await proc.json("/status")) as Status).circuit === "closed", {
      timeoutMs: 20_000,
      message: "breaker closed",
    });
    const before = await list();

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    watchErrors(page, errors);
    await page.goto(`${proc.url}/`);
    const rows = page.locator("#dlq-rows tr[data-id]");
    await rows.first().waitFor({ timeout: 10_000 });
    const row = page.locator("#dlq-rows tr[data-id]", {
      has: page.locator("td.delivered.no"),
    }).first();
    const id = (await row.getAttribute("data-id"))!;
    assert.match(await row.innerText(), /PROCESSING_ERROR[\s\S]*Upstream answered 500/);

    // Open it: payload and headers, bounded.
    await row.locator("button.open").click();
    await page.locator(`#dlq-detail[data-id="${id}"] pre.payload`).waitFor({ timeout: 5000 });
    assert.match(await page.locator("#dlq-detail pre.payload").innerText(), /idempotency_key/);
    assert.match(await page.locator("#dlq-detail pre.headers").innerText(), /traceparent: 00-/);
    await shot(page, "dlq-panel-open");

    // Replay that one letter.
    await row.locator("button.replay").click();
    await page.locator('#dlq-result[data-status="delivered"]').waitFor({ timeout: 15_000 });
    await page.locator(`#dlq-rows tr[data-id="${id}"] td.delivered.yes`).waitFor({
      timeout: 10_000,
    });
    const after = await list();
    const newly = after.filter((d) =>
      d.delivered_since && !before.find((b) => b.id === d.id)?.delivered_since
    );
    assert.deepEqual(newly.map((d) => d.id), [id], "exactly that letter was replayed");
    // The replay's outcome is in the events stream.
    const [, p, o] = id.split(":");
    await page.locator('#events tr[data-type="record.completed"]', {
      hasText: `events/${p}@${o}`,
    }).first().waitFor({ timeout: 10_000 });

    // Its trace id opens that record's audit timeline.
    await page.locator("#dlq-detail a.trace").click();
    await page.locator("#tracebox").waitFor({ state: "visible", timeout: 5000 });
    await waitFor(async () => {
      if ((await page.locator("#trace-rows tr").count()) > 0) return true;
      await page.locator("#dlq-detail a.trace").click(); // events reach the store in batches
      return false;
    }, { timeoutMs: 15_000, intervalMs: 1000, message: "audit timeline rows" });
    assert.match(
      await page.locator("#trace-rows").innerText(),
      /record\.dead_lettered[\s\S]*PROCESSING_ERROR/,
    );
    assert.match(page.url(), /#trace=[0-9a-f]{32}$/);
    await shot(page, "dlq-replayed-and-trace-timeline");

    // A trace id in the live events is a link to the same timeline.
    const link = page.locator("#events a.trace").first();
    await link.waitFor({ timeout: 5000 });
    const trace = await link.getAttribute("data-trace");
    // New events keep arriving at the top; with the pointer on the list they wait (the row
    // under the pointer stays put), and are shown when it leaves.
    await page.locator("#evtable thead").hover();
    const held = await page.locator("#events tr").first().innerText();
    await page.locator("#events-held", { hasText: /paused .* [1-9]\d* new/ }).waitFor({
      timeout: 10_000,
    });
    assert.equal(await page.locator("#events tr").first().innerText(), held, "the list stays put");
    await page.locator(`#events a.trace[data-trace="${trace}"]`).first().click();
    await page.locator(`#tracebox[data-trace="${trace}"]`).waitFor({ timeout: 5000 });
    const top = await page.locator("#events tr").first().innerText();
    await page.locator("#tracebox").hover(); // the pointer leaves the list: the held events show
    await waitFor(async () => (await page.locator("#events tr").first().innerText()) !== top, {
      timeoutMs: 10_000,
      message: "held events shown once the pointer left the list",
    });
    assert.equal(await page.locator("#events-held").innerText(), "");

    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    watchErrors(phone, errors);
    await phone.goto(`${proc.url}/`);
    await phone.locator("#dlq-rows tr[data-id]").first().waitFor({ timeout: 10_000 });
    await phone.locator("#dlq-rows tr[data-id] button.open").first().click();
    await noHorizontalScroll(phone);
  });
});

Deno.test("browser: with a control token the DLQ panel asks for it once, then lists and replays", async () => {
  const { closeApp, createApp } = await import("../../http/app.ts");
  const { serveApp } = await import("../../http/server.ts");
  const { fakeDeps } = await import("../../http/testing.ts");
  const replayed: string[] = [];
  const letter = {
    id: "orders:0:7",
    timestamp: new Date().toISOString(),
    original_topic: "orders",
    original_partition: 0,
    original_offset: "7",
    original_key: "k7",
    original_key_encoding: "utf8",
    original_payload: '{"idempotency_key":"orders-7"}',
    original_payload_encoding: "utf8",
    original_headers: {},
    failure_reason: "PROCESSING_ERROR",
    error_message: "Upstream answered 500",
    retry_count: 3,
    first_failure: new Date().toISOString(),
    last_failure: new Date().toISOString(),
    trace_id: "a".repeat(32),
  };
  const { deps } = fakeDeps({
    controlToken: "s3cret-token",
    dlq: {
      list: () => ({ items: [{ ...letter, delivered_since: replayed.length > 0 }] }),
      replay: (id: string) => {
        replayed.push(id);
        return { id, status: "delivered" };
      },
    },
  });
  const app = createApp(deps);
  const server = await serveApp(app, { port: 0 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const errors: string[] = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.on("pageerror", (e) => errors.push(String(e)));
    let asked = 0;
    await page.goto(`http://127.0.0.1:${server.port}/`);
    const ask = page.locator("#dlq .tokenask.show");
    await ask.waitFor({ timeout: 10_000 });
    asked++;
    assert.match(await ask.innerText(), /enter the control token/);
    await ask.locator("input").fill("s3cret-token");
    await ask.locator("button").click();
    await page.locator('#dlq-rows tr[data-id="orders:0:7"]').waitFor({ timeout: 5000 });
    await page.locator('#dlq-rows tr[data-id="orders:0:7"] button.replay').click();
    await page.locator('#dlq-result[data-status="delivered"]').waitFor({ timeout: 5000 });
    await page.locator('#dlq-rows tr[data-id="orders:0:7"] td.delivered.yes').waitFor({
      timeout: 5000,
    });
    assert.equal(await page.locator("#dlq .tokenask.show").count(), 0, "asked once");
    assert.equal(asked, 1);
    assert.deepEqual(replayed, ["orders:0:7"]);
    await shot(page, "dlq-token-asked-once");
  } finally {
    await browser.close();
    await server.shutdown();
    closeApp(app);
  }
  // The 401s before the token was given are the browser's console errors: expected.
  assert.deepEqual(errors, []);
});

Deno.test("browser: the inspector draws the breaker's statechart from its machine, lights the current state and follows changes without reload; supervision tree, folded internal events, filter, 390 px", async () => {
  await withConsole(async (proc, browser, errors) => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    watchErrors(page, errors);
    await page.goto(`${proc.url}/inspect`);
    await page.locator("#conn", { hasText: "live" }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("a#to-dashboard").getAttribute("href"), "/");

    // The supervision tree as the README draws it: the breaker under `resilience`.
    for (const child of ["http", "audit", "resilience", "idempotency", "pipeline", "replay"]) {
      await page.locator(`.row[data-id="sluice/${child}"]`).waitFor({ timeout: 10_000 });
    }
    assert.equal(
      await page.locator(
        'li:has(> .row[data-id="sluice/resilience"]) > ul .row[data-id="circuit-breaker"]',
      ).count(),
      1,
    );
    assert.ok(
      await page.locator(
        'li:has(> .row[data-id="sluice/pipeline"]) > ul .row[data-id^="partition:"]',
      ).count() >= 1,
    );

    // The breaker's statechart (selected by default), from the machine definition.
    await page.locator("#chart-title", { hasText: "circuit-breaker" }).waitFor({ timeout: 5000 });
    const st = (path: string) => page.locator(`#svgwrap g.st[data-path="${path}"]`);
    for (const s of ["closed", "open", "halfOpen"]) await st(s).waitFor({ timeout: 5000 });
    assert.ok((await page.locator("#svgwrap path.edge").count()) >= 4, "transitions drawn");
    await page.locator('#svgwrap g.st.active[data-path="closed"]').waitFor({ timeout: 5000 });
    assert.equal(await page.locator("#svgwrap g.st.active").count(), 1, "one state lit");
    await page.evaluate("window.marker = 7");
    await shot(page, "inspector-breaker-closed", false);

    // The breaker opens: lit state and the fired transition change without reload.
    await put(proc, "/control/upstream", { errorRate: 1 });
    await page.locator('#svgwrap g.st.active[data-path="open"]').waitFor({ timeout: 20_000 });
    assert.match(await page.locator("#last-fired").innerText(), /closed → open on OPENED/);
    await shot(page, "inspector-breaker-open", false);
    await put(proc, "/control/upstream", { errorRate: 0 });
    await page.locator('#svgwrap g.st.active[data-path="closed"]').waitFor({ timeout: 20_000 });
    await page.locator('#transitions tr[data-actor="circuit-breaker"]', { hasText: "halfOpen" })
      .first().waitFor({ timeout: 5000 });
    assert.equal(await page.evaluate("window.marker"), 7, "no reload");

    // Framework events are folded by default; one click shows them.
    assert.equal(await page.locator("#transitions tr[data-internal]").count(), 0);
    await waitFor(
      async () => /^[1-9]\d* internal/.test(await page.locator("#folded-n").innerText()),
      { timeoutMs: 10_000, message: "internal events counted" },
    );
    await page.locator("#show-internal").check();
    assert.ok((await page.locator("#transitions tr[data-internal]").count()) > 0);
    await page.locator("#show-internal").uncheck();

    // The filter applies to the tree and the transitions.
    await page.locator("#filter").fill("circuit");
    assert.ok(
      await page.locator('.row[data-id^="partition:"]').evaluateAll((rs) =>
        rs.every((r) => (r as unknown as { className: string }).className.includes("hidden"))
      ),
    );
    const actorsShown = await page.locator("#transitions tr[data-actor]").evaluateAll((rs) =>
      rs.map((r) => (r as unknown as { dataset: { actor: string } }).dataset.actor)
    );
    assert.ok(actorsShown.length > 0 && actorsShown.every((a) => a === "circuit-breaker"));
    await page.locator("#filter").fill("");

    // "Selected actor only": the breaker's changes without the audit batcher's routine ones.
    await page.locator("#only-selected").check();
    const only = await page.locator("#transitions tr[data-actor]").evaluateAll((rs) =>
      rs.map((r) => (r as unknown as { dataset: { actor: string } }).dataset.actor)
    );
    assert.ok(only.length > 0 && only.every((a) => a === "circuit-breaker"), `${only}`);
    await page.locator("#only-selected").uncheck();

    // Another machine: a partition's statechart.
    await page.locator('.row[data-id^="partition:"]').first().click();
    await page.locator("#chart-title", { hasText: "partition:" }).waitFor({ timeout: 5000 });
    await page.locator('#svgwrap g.st.active[data-path="running"]').waitFor({ timeout: 5000 });

    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    watchErrors(phone, errors);
    await phone.goto(`${proc.url}/inspect`);
    await phone.locator('#svgwrap g.st[data-path="halfOpen"]').waitFor({ timeout: 10_000 });
    await noHorizontalScroll(phone);
    await shot(phone, "inspector-390px");
  });
});
