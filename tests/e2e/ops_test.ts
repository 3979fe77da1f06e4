/**
 * Tests of the operations kit (`compose/`, issue 9): alert rules with
 * promtool, the k8s manifests and docker-compose.yml against the app's
 * routes and CONFIG_SCHEMA, the dashboard and alerts against the exported
 * metric names. No Docker or cluster needed.
 *
 *   deno test -A tests/e2e/ops_test.ts
 *
 * promtool comes from the Debian package `prometheus`; as root the test
 * installs it when missing, otherwise it fails saying so.
 */
import assert from "node:assert/strict";
import { registry } from "../../actors/runtime/metrics.ts";
import {
  alertExprs,
  alertNames,
  appRoutes,
  checkAlertCoverage,
  checkAutoscaling,
  checkCompose,
  checkDockerfile,
  checkK8s,
  checkMetricNames,
  COMPOSE_DIR,
  dashboardExprs,
  designRoutes,
  isPinnedImage,
  lagAlertThreshold,
  loadAutoscalingManifests,
  loadK8sManifests,
  metricNamesIn,
  parseDurationMs,
  parseYaml,
  readKitFile,
  runbookAnchors,
  shutdownBudgetMs,
} from "../harness/ops_checks.ts";

/** Parsed YAML edited by the negative cases. */
// deno-lint-ignore no-explicit-any
type Json = any;

// ---------------------------------------------------------------- promtool

interface Run {
  code: number;
  out: string;
}

async function run(cmd: string, args: string[], cwd?: string | URL): Promise<Run> {
  try {
    const r = await new Deno.Command(cmd, {
      args,
      cwd,
      stdout: "piped",
      stderr: "piped",
      env: { DEBIAN_FRONTEND: "noninteractive" },
    }).output();
    const dec = new TextDecoder();
    return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { code: 127, out: `${cmd}: not found` };
    throw e;
  }
}

let promtool: Promise<string> | undefined;

/** Path of promtool, installing Debian's `prometheus` package when root and missing. */
function ensurePromtool(): Promise<string> {
  return promtool ??= (async () => {
    if ((await run("promtool", ["--version"])).code === 0) return "promtool";
    if (Deno.uid() !== 0) {
      throw new Error(
        "promtool not found: install the Debian package `prometheus` " +
          "(sudo apt-get install -y prometheus), which provides /usr/bin/promtool",
      );
    }
    const install = ["install", "-y", "--no-install-recommends", "prometheus"];
    let r = await run("apt-get", install);
    if (r.code !== 0) {
      await run("apt-get", ["update"]);
      r = await run("apt-get", install);
    }
    if (r.code !== 0 || (await run("promtool", ["--version"])).code !== 0) {
      throw new Error(`installing the Debian package prometheus failed:\n${r.out}`);
    }
    return "promtool";
  })();
}

const PROM_DIR = new URL("prometheus/", COMPOSE_DIR);

Deno.test("promtool check rules accepts compose/prometheus/alerts.yml", async () => {
  const r = await run(await ensurePromtool(), ["check", "rules", "alerts.yml"], PROM_DIR);
  console.log(r.out.trim());
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS: \d+ rules found/);
});

Deno.test("promtool test rules passes compose/prometheus/alerts_test.yml", async () => {
  const r = await run(await ensurePromtool(), ["test", "rules", "alerts_test.yml"], PROM_DIR);
  console.log(r.out.trim());
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SUCCESS/);
});

Deno.test("promtool check config accepts prometheus.yml (rule path mapped to the repo file)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-prom-" });
  try {
    // The config names the rules by their path inside the container.
    const config = readKitFile("prometheus/prometheus.yml").replace(
      "/etc/prometheus/alerts.yml",
      new URL("alerts.yml", PROM_DIR).pathname,
    );
    await Deno.writeTextFile(`${dir}/prometheus.yml`, config);
    const r = await run(await ensurePromtool(), ["check", "config", `${dir}/prometheus.yml`]);
    assert.equal(r.code, 0, r.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every alert is unit-tested both firing and not firing, with severity and runbook", () => {
  const rules = parseYaml(readKitFile("prometheus/alerts.yml"));
  const tests = parseYaml(readKitFile("prometheus/alerts_test.yml"));
  assert.ok(alertNames(rules).length >= 8, "expected the SLO alert set");
  assert.deepEqual(checkAlertCoverage(rules, tests), []);
  console.log(`README anchors used by the alerts:\n  ${runbookAnchors(rules).join("\n  ")}`);
});

Deno.test("alert coverage check fails when an alert has no not-firing case", () => {
  const rules = parseYaml(readKitFile("prometheus/alerts.yml"));
  const tests = parseYaml(readKitFile("prometheus/alerts_test.yml")) as {
    tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
  };
  for (const t of tests.tests) {
    t.alert_rule_test = t.alert_rule_test.filter((a) =>
      !(a.alertname === "SluiceCircuitBreakerStuckOpen" && a.exp_alerts.length === 0)
    );
  }
  assert.deepEqual(checkAlertCoverage(rules, tests), [
    "SluiceCircuitBreakerStuckOpen has no not-firing test case",
  ]);
});

// ----------------------------------------------------------------- metrics

async function knownMetricNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const m of await registry.getMetricsAsJSON()) {
    names.add(m.name);
    if (String(m.type) === "histogram") {
      for (const s of ["_bucket", "_sum", "_count"]) names.add(m.name + s);
    }
  }
  return names;
}

Deno.test("the metric name scanner finds metrics, not functions, labels or keywords", () => {
  assert.deepEqual(
    metricNamesIn(
      'histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{job="x"}[5m]))) > 0.4 and on (job) b offset 5m or absent(up{job="s"}) / $x * 1e3',
    ).sort(),
    ["a_bucket", "b", "up"],
  );
});

Deno.test("alerts and dashboard use only metric names that sluice exports", async () => {
  const known = await knownMetricNames();
  const rules = parseYaml(readKitFile("prometheus/alerts.yml"));
  const dashboard = JSON.parse(readKitFile("grafana/dashboards/sluice.json"));
  const exprs = [
    ...[...alertExprs(rules)].map(([name, expr]) => ({ where: `alert ${name}`, expr })),
    ...dashboardExprs(dashboard).map(({ panel, expr }) => ({ where: `panel ${panel}`, expr })),
  ];
  assert.deepEqual(checkMetricNames(exprs, known), []);
  assert.deepEqual(
    checkMetricNames([{ where: "x", expr: "rate(no_such_metric_total[5m])" }], known),
    ["x: metric no_such_metric_total is not exported by sluice"],
  );
  // Every sluice metric family is on the dashboard (default process metrics aside).
  const onDashboard = new Set(dashboardExprs(dashboard).flatMap((e) => metricNamesIn(e.expr)));
  const missing = (await registry.getMetricsAsJSON()).map((m) => m.name)
    .filter((f) => !/^(process_|nodejs_)/.test(f))
    .filter((f) => ![f, `${f}_bucket`, `${f}_sum`, `${f}_count`].some((n) => onDashboard.has(n)));
  assert.deepEqual(missing, [], "metrics without a dashboard panel");
});

Deno.test("Grafana provisioning points the dashboard's data source uid at Prometheus", () => {
  const ds = parseYaml(readKitFile("grafana/provisioning/datasources/prometheus.yml")) as {
    datasources: Array<{ uid: string; url: string; type: string }>;
  };
  const provider = parseYaml(readKitFile("grafana/provisioning/dashboards/sluice.yml")) as {
    providers: Array<{ options: { path: string } }>;
  };
  const dashboard = readKitFile("grafana/dashboards/sluice.json");
  const uids = new Set([...dashboard.matchAll(/"uid":\s*"([^"]+)"/g)].map((m) => m[1]));
  assert.ok(uids.has(ds.datasources[0].uid), "dashboard does not use the provisioned uid");
  assert.equal(ds.datasources[0].type, "prometheus");
  const compose = parseYaml(readKitFile("docker-compose.yml")) as {
    services: Record<string, { volumes?: string[] }>;
  };
  const mounts = compose.services.grafana.volumes ?? [];
  assert.ok(
    mounts.some((v) => v.endsWith(`:${provider.providers[0].options.path}:ro`)),
    "the provider path is not where compose mounts the dashboards",
  );
});

// --------------------------------------------------------------- manifests

Deno.test("shutdown budget is the sum of the SLUICE_SHUTDOWN_* deadlines", () => {
  assert.equal(shutdownBudgetMs(), 15_000 + 5_000 + 10_000);
  assert.equal(shutdownBudgetMs({ SLUICE_SHUTDOWN_DRAIN_MS: "60000" }), 75_000);
  assert.equal(parseDurationMs("45s"), 45_000);
  assert.equal(parseDurationMs("1m30s"), 90_000);
  assert.ok(Number.isNaN(parseDurationMs("soon")));
});

Deno.test("k8s manifests: probes on served routes and the HTTP port, grace period covers shutdown", async () => {
  const routes = await appRoutes();
  try {
    console.log(`routes checked against: ${routes.source}`);
    assert.deepEqual(await checkK8s(loadK8sManifests(), routes.exists), []);
  } finally {
    routes.close();
  }
});

Deno.test("k8s check fails on a probe path the app does not serve", async () => {
  const routes = await appRoutes();
  try {
    const manifests = structuredClone(loadK8sManifests()) as Array<Json>;
    const dep = manifests.find((m) => m.kind === "Deployment")!;
    dep.spec.template.spec.containers[0].readinessProbe.httpGet.path = "/health/nope";
    const problems = await checkK8s(manifests, routes.exists);
    assert.ok(
      problems.includes("readinessProbe path /health/nope is not served by the app"),
      problems.join("\n"),
    );
  } finally {
    routes.close();
  }
});

Deno.test("k8s check fails on a wrong probe port, a short grace period and a literal token", async () => {
  const manifests = structuredClone(loadK8sManifests()) as Array<Json>;
  const dep = manifests.find((m) => m.kind === "Deployment")!;
  const pod = dep.spec.template.spec;
  pod.containers[0].livenessProbe.httpGet.port = 8080;
  pod.terminationGracePeriodSeconds = 30;
  pod.containers[0].env = pod.containers[0].env.map((e: { name: string }) =>
    e.name === "SLUICE_CONTROL_TOKEN" ? { name: e.name, value: "hunter2" } : e
  );
  const cm = manifests.find((m) => m.kind === "ConfigMap")!;
  cm.data.SLUICE_SHUTDOWN_TYPO_MS = "1";
  const problems = (await checkK8s(manifests, designRoutes().exists)).join("\n");
  assert.match(problems, /livenessProbe port 8080 is not a port of the container/);
  assert.match(problems, /terminationGracePeriodSeconds 30 s does not exceed/);
  assert.match(problems, /SLUICE_CONTROL_TOKEN must come from a Secret/);
  assert.match(problems, /SLUICE_SHUTDOWN_TYPO_MS is not a variable/);
});

Deno.test("k8s grace period follows deadlines raised in the ConfigMap", async () => {
  const manifests = structuredClone(loadK8sManifests()) as Array<Json>;
  manifests.find((m) => m.kind === "ConfigMap")!.data.SLUICE_SHUTDOWN_FLUSH_MS = "60000";
  const problems = await checkK8s(manifests, designRoutes().exists);
  assert.ok(
    problems.some((p) => p.startsWith("terminationGracePeriodSeconds 60 s")),
    String(problems),
  );
});

// -------------------------------------------------------------- autoscaling

function autoscalingFixture() {
  return {
    manifests: structuredClone(loadK8sManifests()) as Array<Json>,
    autoscaling: structuredClone(loadAutoscalingManifests()) as Array<Json>,
    rules: parseYaml(readKitFile("prometheus/alerts.yml")),
  };
}

Deno.test("autoscaling: KEDA ScaledObject and HPA tied to partitions, lag alert, group and grace period", () => {
  const { manifests, autoscaling, rules } = autoscalingFixture();
  assert.equal(lagAlertThreshold(rules), 500);
  assert.deepEqual(
    autoscaling.map((d) => d.kind ?? "prometheus-adapter rules").sort(),
    ["HorizontalPodAutoscaler", "ScaledObject", "prometheus-adapter rules"],
  );
  assert.deepEqual(checkAutoscaling(manifests, autoscaling, rules), []);
});

Deno.test("autoscaling check fails past the partition count and on a scale-down faster than a drain", () => {
  const { manifests, autoscaling, rules } = autoscalingFixture();
  const so = autoscaling.find((d) => d.kind === "ScaledObject");
  const hpa = autoscaling.find((d) => d.kind === "HorizontalPodAutoscaler");
  so.spec.maxReplicaCount = 12;
  so.spec.triggers[0].metadata.allowIdleConsumers = "true";
  hpa.spec.behavior.scaleDown.policies[0].periodSeconds = 15;
  hpa.spec.behavior.scaleDown.policies[0].value = 3;
  const problems = checkAutoscaling(manifests, autoscaling, rules).join("\n");
  assert.match(problems, /ScaledObject sluice: maximum replicas 12 exceeds the 6 partitions/);
  assert.match(problems, /allowIdleConsumers true/);
  assert.match(problems, /HorizontalPodAutoscaler sluice: scaleDown periodSeconds 15 is shorter/);
  assert.match(problems, /scaleDown removes 3 pods per period, more than .* maxUnavailable 1/);
});

Deno.test("autoscaling check follows the Deployment: fewer partitions, longer grace period", () => {
  const { manifests, autoscaling, rules } = autoscalingFixture();
  const dep = manifests.find((m) => m.kind === "Deployment")!;
  dep.metadata.annotations["sluice.io/topic-partitions"] = "4";
  dep.spec.template.spec.terminationGracePeriodSeconds = 120;
  const problems = checkAutoscaling(manifests, autoscaling, rules).join("\n");
  assert.match(problems, /ScaledObject sluice: maximum replicas 6 exceeds the 4 partitions/);
  assert.match(problems, /HorizontalPodAutoscaler sluice: maximum replicas 6 exceeds the 4/);
  assert.match(problems, /periodSeconds 90 is shorter than terminationGracePeriodSeconds 120/);
  delete dep.metadata.annotations["sluice.io/topic-partitions"];
  assert.match(
    checkAutoscaling(manifests, autoscaling, rules).join("\n"),
    /Deployment has no sluice.io\/topic-partitions annotation/,
  );
});

Deno.test("autoscaling check fails on a lag target above the alert, a wrong group, an unserved metric", () => {
  const { manifests, autoscaling, rules } = autoscalingFixture();
  const so = autoscaling.find((d) => d.kind === "ScaledObject");
  const hpa = autoscaling.find((d) => d.kind === "HorizontalPodAutoscaler");
  so.spec.triggers[0].metadata.lagThreshold = "800";
  so.spec.triggers[0].metadata.consumerGroup = "sluice-old";
  hpa.spec.metrics[0].external.metric.name = "kafka_lag";
  hpa.spec.scaleTargetRef.name = "sluice-canary";
  const cm = manifests.find((m) => m.kind === "ConfigMap")!;
  cm.data.SLUICE_TOPICS = "events,orders";
  const problems = checkAutoscaling(manifests, autoscaling, rules).join("\n");
  assert.match(
    problems,
    /lag target 800 per replica is not below the SluiceKafkaConsumerLagHigh threshold 500/,
  );
  assert.match(problems, /consumerGroup sluice-old is not SLUICE_GROUP_ID sluice/);
  assert.match(problems, /no kafka trigger for topic orders/);
  assert.match(problems, /no prometheus-adapter external rule serves the metric kafka_lag/);
  assert.match(
    problems,
    /HorizontalPodAutoscaler sluice: scaleTargetRef is not the Deployment sluice/,
  );
});

// ----------------------------------------------------------------- compose

Deno.test("docker-compose.yml: pinned images, real SLUICE_ variables, served healthcheck, grace period", async () => {
  const doc = parseYaml(readKitFile("docker-compose.yml"));
  const routes = await appRoutes();
  try {
    assert.deepEqual(await checkCompose(doc, routes.exists), []);
  } finally {
    routes.close();
  }
  assert.deepEqual(checkDockerfile(readKitFile("Dockerfile")), []);
});

Deno.test("Dockerfile check refuses `deno task start` (a process between the runtime and sluice)", () => {
  const text = readKitFile("Dockerfile").replace(/^ENTRYPOINT .*$/m, "").replace(
    /^CMD .*$/m,
    'CMD ["task", "start"]',
  );
  const problems = checkDockerfile(text).join("\n");
  assert.match(problems, /ENTRYPOINT is not the launcher/);
  assert.match(problems, /CMD is not start/);
});

Deno.test("systemd unit example: runs the launcher, stops with SIGTERM, grace above the phase deadlines", () => {
  const unit = readKitFile("sluice.service");
  assert.match(unit, /^ExecStart=\/opt\/sluice\/sluice start$/m);
  assert.match(unit, /^KillSignal=SIGTERM$/m);
  assert.match(unit, /^KillMode=mixed$/m);
  const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
  assert.ok(stop > 30, `TimeoutStopSec ${stop} exceeds the 30 s of default phase deadlines`);
  assert.match(unit, /^SuccessExitStatus=0$/m);
});

Deno.test("compose check fails on latest tags, unknown variables, wrong healthcheck, short grace", async () => {
  const doc = parseYaml(readKitFile("docker-compose.yml")) as Json;
  doc.services.grafana.image = "grafana/grafana:latest";
  doc.services.prometheus.image = "prom/prometheus";
  doc.services.sluice.environment.SLUICE_KAFKA_BROKER = "kafka:9092";
  doc.services.sluice.healthcheck.test = ["CMD", "curl", "-f", "http://127.0.0.1:9090/healthz"];
  doc.services.sluice.stop_grace_period = "10s";
  const problems = (await checkCompose(doc, designRoutes().exists)).join("\n");
  assert.match(problems, /grafana: image grafana\/grafana:latest is not pinned/);
  assert.match(problems, /prometheus: image prom\/prometheus is not pinned/);
  assert.match(problems, /SLUICE_KAFKA_BROKER is not a variable/);
  assert.match(problems, /healthcheck path \/healthz is not served/);
  assert.match(problems, /stop_grace_period 10s does not exceed/);
  assert.equal(isPinnedImage("quay.io/ceph/daemon:v7.0.3-stable-7.0-quincy-centos-stream8"), true);
  assert.equal(isPinnedImage("localhost:5000/sluice"), false);
  assert.equal(isPinnedImage("ceph/demo:latest-reef"), false);
});
