/**
 * Checks of the operations kit under `compose/` (issue 9), as plain
 * functions so that `tests/e2e/ops_test.ts` runs the same code on the real files
 * and on broken copies (negative cases). Each `check*` function returns the
 * list of problems found; an empty list means the files are consistent.
 *
 * Sources of truth: `supervisors/config.ts` (variable names, defaults of the
 * shutdown deadlines), the HTTP app (`http/app.ts`, routes), and
 * `actors/runtime/metrics.ts` (metric names).
 *
 * @module
 */
import { parse, parseAllDocuments } from "./npm/yaml.ts";
import { CONFIG_SCHEMA, type OptionSpec } from "../../supervisors/config.ts";

/** The repository root. */
export const ROOT = new URL("../../", import.meta.url);
/** The operations kit. */
export const COMPOSE_DIR = new URL("compose/", ROOT);

/** Margin required above the sum of the shutdown deadlines (untimed phases, process exit). */
export const SHUTDOWN_MARGIN_MS = 5_000;

const SCHEMA = CONFIG_SCHEMA as readonly OptionSpec[];
/** Every environment variable sluice reads. */
export const CONFIG_ENV_NAMES: ReadonlySet<string> = new Set(SCHEMA.map((s) => s.env));

/**
 * The GET routes of the README's "HTTP endpoints" that a probe or a scraper may target. Used only
 * when `http/app.ts` cannot be found (it is the authority when present).
 */
export const README_GET_ROUTES: readonly string[] = [
  "/health/live",
  "/health/ready",
  "/metrics",
  "/ws/events",
  "/dlq",
  "/inspect",
  "/inspect/actors",
  "/inspect/ws",
];

/** Tells whether `GET path` is served by the app. */
export type RouteExists = (path: string) => Promise<boolean>;

/** A plain object, or undefined. */
type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj | undefined =>
  v !== null && typeof v === "object" && !Array.isArray(v) ? v as Obj : undefined;
const arr = (v: unknown): unknown[] => Array.isArray(v) ? v : [];
const str = (v: unknown): string | undefined => typeof v === "string" ? v : undefined;

/** Reads a file of the kit (path relative to `compose/`). */
export function readKitFile(rel: string): string {
  return Deno.readTextFileSync(new URL(rel, COMPOSE_DIR));
}

/** Parses one YAML document; throws on syntax errors. */
export function parseYaml(text: string): unknown {
  return parse(text);
}

/** Parses a multi-document YAML stream; throws on the first syntax error. */
export function parseYamlDocs(text: string): unknown[] {
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw d.errors[0];
    return d.toJS();
  }).filter((d) => d !== null && d !== undefined);
}

/** Reads every manifest of `compose/k8s/` (all documents of every *.yaml). */
export function loadK8sManifests(): unknown[] {
  const dir = new URL("k8s/", COMPOSE_DIR);
  const names = [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && /\.ya?ml$/.test(e.name))
    .map((e) => e.name)
    .sort();
  return names.flatMap((n) => parseYamlDocs(Deno.readTextFileSync(new URL(n, dir))));
}

// ---------------------------------------------------------------- shutdown

/**
 * The shutdown phase deadlines in force: every `SLUICE_SHUTDOWN_*_MS` of
 * CONFIG_SCHEMA, at its default unless `env` sets it.
 */
export function shutdownDeadlinesMs(env: Record<string, string> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const spec of SCHEMA) {
    if (!/^SLUICE_SHUTDOWN_.*_MS$/.test(spec.env)) continue;
    const raw = env[spec.env];
    out[spec.env] = raw === undefined ? spec.default as number : Number(raw);
  }
  return out;
}

/** Sum of {@link shutdownDeadlinesMs}. */
export function shutdownBudgetMs(env: Record<string, string> = {}): number {
  return Object.values(shutdownDeadlinesMs(env)).reduce((a, b) => a + b, 0);
}

/** A Go/compose duration (`45s`, `1m30s`, `500ms`, `2m`) in ms; NaN when not one. */
export function parseDurationMs(text: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  for (const m of text.trim().matchAll(re)) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms"];
    consumed += m[0].length;
  }
  return consumed > 0 && consumed === text.trim().length ? total : NaN;
}

/** Checks that environment variable names are all known to CONFIG_SCHEMA. */
function checkEnvNames(where: string, names: Iterable<string>): string[] {
  const problems: string[] = [];
  for (const n of names) {
    if (n.startsWith("SLUICE_") && !CONFIG_ENV_NAMES.has(n)) {
      problems.push(`${where}: ${n} is not a variable of supervisors/config.ts CONFIG_SCHEMA`);
    }
  }
  return problems;
}

// -------------------------------------------------------------- kubernetes

function findKind(manifests: unknown[], kind: string): Obj[] {
  return manifests.map(obj).filter((m): m is Obj => m?.kind === kind);
}

function labelsMatch(selector: unknown, labels: unknown): boolean {
  const sel = obj(obj(selector)?.matchLabels) ?? obj(selector);
  const l = obj(labels) ?? {};
  if (!sel || Object.keys(sel).length === 0) return false;
  return Object.entries(sel).every(([k, v]) => l[k] === v);
}

/** Number of seconds a `preStop` hook waits (`sleep N` or the native sleep action). */
function preStopSeconds(lifecycle: unknown): number | undefined {
  const pre = obj(obj(lifecycle)?.preStop);
  if (!pre) return undefined;
  const native = obj(pre.sleep)?.seconds;
  if (typeof native === "number") return native;
  const cmd = arr(obj(pre.exec)?.command).map(String).join(" ");
  const m = cmd.match(/\bsleep\s+(\d+(?:\.\d+)?)\b/);
  return m ? Number(m[1]) : undefined;
}

/**
 * Checks the k8s manifests: probes target existing routes on the container's
 * HTTP port, the grace period covers preStop plus the shutdown deadlines plus
 * a margin, variable names are real, the control token comes from a Secret,
 * the Service and PodDisruptionBudget select the pods.
 */
export async function checkK8s(manifests: unknown[], routeExists: RouteExists): Promise<string[]> {
  const problems: string[] = [];
  const deployments = findKind(manifests, "Deployment");
  if (deployments.length !== 1) {
    return [`expected one Deployment, found ${deployments.length}`];
  }
  const dep = deployments[0];
  const podTemplate = obj(obj(dep.spec)?.template);
  const podLabels = obj(podTemplate?.metadata)?.labels;
  const pod = obj(podTemplate?.spec) ?? {};
  const containers = arr(pod.containers).map(obj).filter((c): c is Obj => c !== undefined);
  const app = containers.find((c) => c.name === "sluice") ?? containers[0];
  if (!app) return ["Deployment has no container"];
  if (!labelsMatch(obj(dep.spec)?.selector, podLabels)) {
    problems.push("Deployment selector does not match its pod template labels");
  }

  // Environment: ConfigMaps loaded by envFrom, then explicit env entries.
  const configMaps = new Map(
    findKind(manifests, "ConfigMap").map((c) => [str(obj(c.metadata)?.name), obj(c.data) ?? {}]),
  );
  const env: Record<string, string> = {};
  for (const from of arr(app.envFrom).map(obj)) {
    const name = str(obj(from?.configMapRef)?.name);
    if (name === undefined) continue;
    const data = configMaps.get(name);
    if (!data) {
      problems.push(`envFrom references ConfigMap ${name}, which is not in the manifests`);
      continue;
    }
    for (const [k, v] of Object.entries(data)) env[k] = String(v);
    problems.push(...checkEnvNames(`ConfigMap ${name}`, Object.keys(data)));
    if ("SLUICE_CONTROL_TOKEN" in data) {
      problems.push(`ConfigMap ${name} holds SLUICE_CONTROL_TOKEN: it belongs in a Secret`);
    }
  }
  const envEntries = arr(app.env).map(obj).filter((e): e is Obj => e !== undefined);
  for (const e of envEntries) {
    if (typeof e.value === "string") env[String(e.name)] = e.value;
  }
  problems.push(...checkEnvNames("Deployment env", envEntries.map((e) => String(e.name))));
  const token = envEntries.find((e) => e.name === "SLUICE_CONTROL_TOKEN");
  if (!obj(obj(token?.valueFrom)?.secretKeyRef)) {
    problems.push("SLUICE_CONTROL_TOKEN must come from a Secret (valueFrom.secretKeyRef)");
  }

  // The HTTP port the app listens on, and the container ports.
  const httpPort = Number(
    env.SLUICE_HTTP_PORT ?? SCHEMA.find((s) => s.env === "SLUICE_HTTP_PORT")!.default,
  );
  const ports = arr(app.ports).map(obj).filter((p): p is Obj => p !== undefined);
  const resolvePort = (p: unknown): number | undefined =>
    typeof p === "number"
      ? (ports.some((q) => q.containerPort === p) ? p : undefined)
      : ports.find((q) => q.name === p)?.containerPort as number | undefined;
  if (!ports.some((p) => p.containerPort === httpPort)) {
    problems.push(`no containerPort ${httpPort} (SLUICE_HTTP_PORT) on the sluice container`);
  }

  // Probes.
  const required = { livenessProbe: "/health/live", readinessProbe: "/health/ready" } as const;
  for (const kind of ["livenessProbe", "readinessProbe", "startupProbe"] as const) {
    const probe = obj(app[kind]);
    if (!probe) {
      if (kind !== "startupProbe") problems.push(`${kind} is missing`);
      continue;
    }
    const get = obj(probe.httpGet);
    if (!get) {
      problems.push(`${kind} is not an httpGet probe`);
      continue;
    }
    const path = str(get.path) ?? "/";
    if (kind in required && path !== required[kind as keyof typeof required]) {
      problems.push(`${kind} should probe ${required[kind as keyof typeof required]}, not ${path}`);
    }
    if (!(await routeExists(path))) problems.push(`${kind} path ${path} is not served by the app`);
    const port = resolvePort(get.port);
    if (port === undefined) {
      problems.push(`${kind} port ${String(get.port)} is not a port of the container`);
    } else if (port !== httpPort) {
      problems.push(`${kind} port ${port} is not the HTTP port ${httpPort}`);
    }
  }

  // Grace period: preStop runs first and counts against it.
  const grace = pod.terminationGracePeriodSeconds;
  const preStop = preStopSeconds(app.lifecycle);
  if (preStop === undefined) problems.push("no preStop hook delaying SIGTERM (sleep)");
  const budget = (preStop ?? 0) * 1000 + shutdownBudgetMs(env) + SHUTDOWN_MARGIN_MS;
  if (typeof grace !== "number") {
    problems.push("terminationGracePeriodSeconds is not set");
  } else if (grace * 1000 <= budget) {
    problems.push(
      `terminationGracePeriodSeconds ${grace} s does not exceed preStop ${
        preStop ?? 0
      } s + shutdown deadlines ${shutdownBudgetMs(env) / 1000} s + margin ${
        SHUTDOWN_MARGIN_MS / 1000
      } s`,
    );
  }

  // Resources and hardening.
  const res = obj(app.resources);
  if (!obj(res?.requests) || !obj(res?.limits) || !obj(res?.limits)?.memory) {
    problems.push("container resources need requests and a memory limit");
  }
  const sc = { ...obj(pod.securityContext), ...obj(app.securityContext) };
  if (sc.runAsNonRoot !== true) problems.push("securityContext.runAsNonRoot is not true");
  if (sc.allowPrivilegeEscalation !== false) {
    problems.push("securityContext.allowPrivilegeEscalation is not false");
  }

  // Prometheus scrape annotation targets a served path.
  const annotations = obj(obj(podTemplate?.metadata)?.annotations) ?? {};
  const scrapePath = str(annotations["prometheus.io/path"]);
  if (scrapePath !== undefined && !(await routeExists(scrapePath))) {
    problems.push(`prometheus.io/path ${scrapePath} is not served by the app`);
  }

  // Service and PodDisruptionBudget select these pods; the Service targets the HTTP port.
  const services = findKind(manifests, "Service");
  if (services.length === 0) problems.push("no Service");
  for (const s of services) {
    const spec = obj(s.spec) ?? {};
    if (!labelsMatch(spec.selector, podLabels)) {
      problems.push(`Service ${str(obj(s.metadata)?.name)} does not select the sluice pods`);
    }
    for (const p of arr(spec.ports).map(obj)) {
      if (resolvePort(p?.targetPort ?? p?.port) !== httpPort) {
        problems.push(`Service port ${String(p?.port)} does not target the HTTP port ${httpPort}`);
      }
    }
  }
  const pdbs = findKind(manifests, "PodDisruptionBudget");
  if (pdbs.length === 0) problems.push("no PodDisruptionBudget");
  for (const p of pdbs) {
    if (!labelsMatch(obj(p.spec)?.selector, podLabels)) {
      problems.push(`PodDisruptionBudget ${str(obj(p.metadata)?.name)} does not select the pods`);
    }
  }
  return problems;
}

// ------------------------------------------------------------- autoscaling

/** The alert whose per-partition lag threshold the autoscalers must stay below. */
export const LAG_ALERT = "SluiceKafkaConsumerLagHigh";
/** Deployment annotation: partitions of each consumed topic (the largest). */
export const PARTITIONS_ANNOTATION = "sluice.io/topic-partitions";

/**
 * Reads every document of `compose/k8s/autoscaling/*.yaml` (the KEDA
 * ScaledObject, the HPA and the prometheus-adapter rules). They are kept out
 * of `compose/k8s/` itself so that `kubectl apply -f compose/k8s/` does not
 * install two autoscalers at once.
 */
export function loadAutoscalingManifests(): unknown[] {
  const dir = new URL("k8s/autoscaling/", COMPOSE_DIR);
  const names = [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && /\.ya?ml$/.test(e.name))
    .map((e) => e.name)
    .sort();
  return names.flatMap((n) => parseYamlDocs(Deno.readTextFileSync(new URL(n, dir))));
}

/** The per-partition threshold of {@link LAG_ALERT} (`... > N` in its expression). */
export function lagAlertThreshold(rulesDoc: unknown): number | undefined {
  const expr = alertExprs(rulesDoc).get(LAG_ALERT);
  const m = expr?.match(/kafka_consumer_lag\b[\s\S]*>\s*(\d+(?:\.\d+)?)\s*$/);
  return m ? Number(m[1]) : undefined;
}

/**
 * Checks an HPA `behavior` (also KEDA's `advanced.horizontalPodAutoscalerConfig.behavior`):
 * scale-down removes at most `maxUnavailable` pods (the PodDisruptionBudget's)
 * per period, and each period and the stabilization window are at least the
 * pod's termination grace period, so a pod has finished its drain, commit and
 * audit flush before the next one is told to stop.
 */
function checkScaleDown(
  where: string,
  behavior: unknown,
  graceSeconds: number,
  maxUnavailable: number,
): string[] {
  const problems: string[] = [];
  const down = obj(obj(behavior)?.scaleDown);
  if (!down) return [`${where}: no behavior.scaleDown (the default removes pods in bulk)`];
  if (down.selectPolicy === "Disabled") return problems;
  const window = down.stabilizationWindowSeconds;
  if (typeof window !== "number" || window < graceSeconds) {
    problems.push(
      `${where}: scaleDown.stabilizationWindowSeconds ${
        String(window)
      } is below terminationGracePeriodSeconds ${graceSeconds}`,
    );
  }
  const policies = arr(down.policies).map(obj).filter((p): p is Obj => p !== undefined);
  if (policies.length === 0) problems.push(`${where}: scaleDown has no policies`);
  for (const p of policies) {
    if (p.type !== "Pods") {
      problems.push(`${where}: scaleDown policy type ${String(p.type)} (use Pods, 1 at a time)`);
    } else if (typeof p.value !== "number" || p.value > maxUnavailable) {
      problems.push(
        `${where}: scaleDown removes ${
          String(p.value)
        } pods per period, more than the PodDisruptionBudget's maxUnavailable ${maxUnavailable}`,
      );
    }
    if (typeof p.periodSeconds !== "number" || p.periodSeconds < graceSeconds) {
      problems.push(
        `${where}: scaleDown periodSeconds ${
          String(p.periodSeconds)
        } is shorter than terminationGracePeriodSeconds ${graceSeconds}: the next pod would stop before the previous one finished draining`,
      );
    }
  }
  return problems;
}

/**
 * Checks the autoscalers of `compose/k8s/autoscaling/` against the base
 * manifests and the alert rules:
 *  - each targets the sluice Deployment; min >= 1, min <= max;
 *  - max replicas <= the Deployment's `sluice.io/topic-partitions`;
 *  - scale-down: see {@link checkScaleDown}; the grace period itself must
 *    exceed preStop + drain + commit + flush deadlines ({@link checkK8s});
 *  - the target lag per replica is below {@link LAG_ALERT}'s threshold;
 *  - KEDA: one kafka trigger per SLUICE_TOPICS topic, with the ConfigMap's
 *    brokers and group, `allowIdleConsumers` not true;
 *  - HPA: an External `kafka_consumer_lag` metric served by a
 *    prometheus-adapter rule whose series is the metric sluice exports.
 */
export function checkAutoscaling(
  manifests: unknown[],
  autoscaling: unknown[],
  rulesDoc: unknown,
): string[] {
  const problems: string[] = [];
  const dep = findKind(manifests, "Deployment")[0];
  if (!dep) return ["no Deployment"];
  const depName = str(obj(dep.metadata)?.name);
  const pod = obj(obj(obj(dep.spec)?.template)?.spec) ?? {};
  const grace = typeof pod.terminationGracePeriodSeconds === "number"
    ? pod.terminationGracePeriodSeconds
    : 30;
  const partitions = Number(obj(obj(dep.metadata)?.annotations)?.[PARTITIONS_ANNOTATION]);
  if (!Number.isInteger(partitions) || partitions < 1) {
    problems.push(`Deployment has no ${PARTITIONS_ANNOTATION} annotation (a positive integer)`);
  }
  const pdbMax = findKind(manifests, "PodDisruptionBudget")
    .map((p) => obj(p.spec)?.maxUnavailable).find((v) => typeof v === "number") as
      | number
      | undefined;
  const maxUnavailable = pdbMax ?? 1;
  const alertAt = lagAlertThreshold(rulesDoc);
  if (alertAt === undefined) problems.push(`no ${LAG_ALERT} threshold found in the alert rules`);

  // The ConfigMap loaded by the Deployment (brokers, group, topics).
  const env: Record<string, string> = {};
  for (const c of findKind(manifests, "ConfigMap")) {
    for (const [k, v] of Object.entries(obj(c.data) ?? {})) env[k] = String(v);
  }
  const topics = (env.SLUICE_TOPICS ?? "events").split(",").map((t) => t.trim()).filter(Boolean);
  const group = env.SLUICE_GROUP_ID ?? "sluice";

  const common = (where: string, spec: Obj, min: unknown, max: unknown, behavior: unknown) => {
    const target = obj(spec.scaleTargetRef);
    if (str(target?.name) !== depName || (target?.kind ?? "Deployment") !== "Deployment") {
      problems.push(`${where}: scaleTargetRef is not the Deployment ${depName}`);
    }
    if (typeof min !== "number" || min < 1) {
      problems.push(`${where}: minimum replicas ${String(min)} (at least 1)`);
    }
    if (typeof max !== "number") {
      problems.push(`${where}: no maximum replicas`);
    } else {
      if (typeof min === "number" && min > max) {
        problems.push(`${where}: minimum replicas ${min} above maximum ${max}`);
      }
      if (Number.isInteger(partitions) && max > partitions) {
        problems.push(
          `${where}: maximum replicas ${max} exceeds the ${partitions} partitions (${PARTITIONS_ANNOTATION}): the extra consumers would sit idle`,
        );
      }
    }
    problems.push(...checkScaleDown(where, behavior, grace, maxUnavailable));
  };
  const checkLagTarget = (where: string, target: unknown) => {
    const t = Number(target);
    if (!(t > 0)) {
      problems.push(`${where}: lag target ${String(target)} is not a positive number`);
    } else if (alertAt !== undefined && t >= alertAt) {
      problems.push(
        `${where}: lag target ${t} per replica is not below the ${LAG_ALERT} threshold ${alertAt}: the alert would fire before the autoscaler adds a pod`,
      );
    }
  };

  const scaled = findKind(autoscaling, "ScaledObject");
  const hpas = findKind(autoscaling, "HorizontalPodAutoscaler");
  if (scaled.length !== 1) problems.push(`expected one KEDA ScaledObject, found ${scaled.length}`);
  if (hpas.length !== 1) {
    problems.push(`expected one HorizontalPodAutoscaler, found ${hpas.length}`);
  }

  for (const so of scaled) {
    const where = `ScaledObject ${str(obj(so.metadata)?.name)}`;
    const spec = obj(so.spec) ?? {};
    common(
      where,
      spec,
      spec.minReplicaCount ?? 0,
      spec.maxReplicaCount,
      obj(obj(spec.advanced)?.horizontalPodAutoscalerConfig)?.behavior,
    );
    const triggers = arr(spec.triggers).map(obj).filter((t): t is Obj => t?.type === "kafka");
    const seen = new Set<string>();
    for (const t of triggers) {
      const md = obj(t.metadata) ?? {};
      const topic = str(md.topic);
      const tw = `${where} trigger ${topic ?? "(no topic)"}`;
      if (topic === undefined || !topics.includes(topic)) {
        problems.push(`${tw}: topic is not one of SLUICE_TOPICS (${topics.join(",")})`);
      } else seen.add(topic);
      if (str(md.consumerGroup) !== group) {
        problems.push(
          `${tw}: consumerGroup ${String(md.consumerGroup)} is not SLUICE_GROUP_ID ${group}`,
        );
      }
      if (
        env.SLUICE_KAFKA_BROKERS !== undefined && md.bootstrapServers !== env.SLUICE_KAFKA_BROKERS
      ) {
        problems.push(`${tw}: bootstrapServers differ from SLUICE_KAFKA_BROKERS`);
      }
      if (String(md.allowIdleConsumers ?? "false") === "true") {
        problems.push(`${tw}: allowIdleConsumers true lets KEDA go past the partition count`);
      }
      checkLagTarget(tw, md.lagThreshold ?? 10);
    }
    for (const topic of topics) {
      if (!seen.has(topic)) problems.push(`${where}: no kafka trigger for topic ${topic}`);
    }
  }

  const adapterRules = autoscaling.map(obj).flatMap((d) => arr(d?.externalRules)).map(obj);
  for (const hpa of hpas) {
    const where = `HorizontalPodAutoscaler ${str(obj(hpa.metadata)?.name)}`;
    const spec = obj(hpa.spec) ?? {};
    common(where, spec, spec.minReplicas ?? 1, spec.maxReplicas, spec.behavior);
    const lagMetrics = arr(spec.metrics).map(obj)
      .filter((m) => m?.type === "External")
      .map((m) => obj(m?.external));
    if (lagMetrics.length === 0) problems.push(`${where}: no External lag metric`);
    for (const m of lagMetrics) {
      const name = str(obj(m?.metric)?.name);
      const rule = adapterRules.find((r) =>
        (str(obj(r?.name)?.as) ?? str(r?.seriesQuery)?.match(/^(\w+)/)?.[1]) === name
      );
      if (!rule) {
        problems.push(`${where}: no prometheus-adapter external rule serves the metric ${name}`);
      } else if (!/^kafka_consumer_lag\b/.test(str(rule.seriesQuery) ?? "")) {
        problems.push(`${where}: the adapter rule for ${name} does not read kafka_consumer_lag`);
      }
      const sel = str(obj(obj(obj(m?.metric)?.selector)?.matchLabels)?.topic);
      if (sel === undefined || !topics.includes(sel)) {
        problems.push(`${where}: metric selector topic ${String(sel)} is not one of SLUICE_TOPICS`);
      }
      const target = obj(m?.target);
      if (target?.type !== "AverageValue") {
        problems.push(
          `${where}: target type ${String(target?.type)} (use AverageValue: lag per replica)`,
        );
      }
      checkLagTarget(where, target?.averageValue);
    }
  }
  return problems;
}

// ------------------------------------------------------------------ compose

/** True for an image reference pinned to an explicit, non-`latest` tag or a digest. */
export function isPinnedImage(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const lastSlash = image.lastIndexOf("/");
  const colon = image.indexOf(":", lastSlash + 1);
  if (colon < 0) return false;
  const tag = image.slice(colon + 1);
  return tag !== "" && !/latest/i.test(tag) && !tag.includes("$");
}

/** Compose `environment` as a map, whether written as a map or a list. */
function composeEnv(env: unknown): Record<string, string> {
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map(String).map((e) => {
        const i = e.indexOf("=");
        return i < 0 ? [e, ""] : [e.slice(0, i), e.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(obj(env) ?? {}).map(([k, v]) => [k, String(v)]));
}

/**
 * Checks docker-compose.yml: every service runs a pinned image; sluice's
 * variable names are real; its healthcheck targets an existing route on its
 * HTTP port; its stop grace period exceeds the shutdown deadlines plus a margin.
 */
export async function checkCompose(doc: unknown, routeExists: RouteExists): Promise<string[]> {
  const problems: string[] = [];
  const services = obj(obj(doc)?.services);
  if (!services) return ["no services"];
  for (const [name, raw] of Object.entries(services)) {
    const s = obj(raw) ?? {};
    const image = str(s.image);
    if (image === undefined) {
      problems.push(`service ${name} has no image (pin one, even when built)`);
    } else if (!isPinnedImage(image)) {
      problems.push(`service ${name}: image ${image} is not pinned`);
    }
  }
  const sluice = obj(services.sluice);
  if (!sluice) return [...problems, "no sluice service"];
  const env = composeEnv(sluice.environment);
  problems.push(...checkEnvNames("sluice environment", Object.keys(env)));
  for (const needed of ["SLUICE_KAFKA_BROKERS", "SLUICE_S3_ENDPOINT"]) {
    if (!(needed in env)) problems.push(`sluice environment lacks ${needed}`);
  }
  const httpPort = Number(
    env.SLUICE_HTTP_PORT ?? SCHEMA.find((s) => s.env === "SLUICE_HTTP_PORT")!.default,
  );

  const test = obj(sluice.healthcheck)?.test;
  const testText = Array.isArray(test) ? test.map(String).join(" ") : String(test ?? "");
  const url = testText.match(/https?:\/\/[^\s'"`]+/)?.[0];
  if (!url) {
    problems.push("sluice healthcheck does not probe an http:// URL");
  } else {
    const u = new URL(url);
    if (u.pathname !== "/health/ready") {
      problems.push(`sluice healthcheck probes ${u.pathname}, expected /health/ready`);
    }
    if (!(await routeExists(u.pathname))) {
      problems.push(`sluice healthcheck path ${u.pathname} is not served by the app`);
    }
    if (Number(u.port || 80) !== httpPort) {
      problems.push(`sluice healthcheck port ${u.port} is not SLUICE_HTTP_PORT ${httpPort}`);
    }
  }

  const grace = parseDurationMs(String(sluice.stop_grace_period ?? ""));
  const budget = shutdownBudgetMs(env) + SHUTDOWN_MARGIN_MS;
  if (!(grace > budget)) {
    problems.push(
      `sluice stop_grace_period ${
        String(sluice.stop_grace_period)
      } does not exceed the shutdown deadlines ${shutdownBudgetMs(env) / 1000} s + margin ${
        SHUTDOWN_MARGIN_MS / 1000
      } s`,
    );
  }
  const build = obj(sluice.build);
  if (!build || str(build.dockerfile) !== "compose/Dockerfile") {
    problems.push("sluice is not built from compose/Dockerfile");
  }
  return problems;
}

/**
 * Checks compose/Dockerfile: pinned official Deno image, started through the
 * launcher (`/app/sluice start`, which execs Deno: SIGTERM reaches sluice).
 */
export function checkDockerfile(text: string): string[] {
  const problems: string[] = [];
  const from = text.match(/^FROM\s+(\S+)/m)?.[1];
  if (from !== "denoland/deno:2.9.6") problems.push(`FROM ${from}: expected denoland/deno:2.9.6`);
  if (!/^ENTRYPOINT\s+\["\/app\/sluice"\]/m.test(text)) {
    problems.push("ENTRYPOINT is not the launcher /app/sluice");
  }
  if (!/^CMD\s+\["start"\]/m.test(text)) problems.push("CMD is not start");
  if (!/^USER\s+(deno|1993)\b/m.test(text)) problems.push("the image does not drop root");
  return problems;
}

// ------------------------------------------------------------------ alerts

/** Names of the alerting rules of an alerts.yml document. */
export function alertNames(rulesDoc: unknown): string[] {
  return arr(obj(rulesDoc)?.groups).flatMap((g) => arr(obj(g)?.rules))
    .map((r) => str(obj(r)?.alert)).filter((n): n is string => n !== undefined);
}

/** PromQL expressions of an alerts.yml document, by alert name. */
export function alertExprs(rulesDoc: unknown): Map<string, string> {
  return new Map(
    arr(obj(rulesDoc)?.groups).flatMap((g) => arr(obj(g)?.rules)).map(obj)
      .filter((r): r is Obj => typeof r?.alert === "string")
      .map((r) => [String(r.alert), String(r.expr)]),
  );
}

/**
 * Checks that every alert is tested both firing (non-empty `exp_alerts`) and
 * not firing (empty `exp_alerts`) in a promtool test file, and that every
 * alert has a severity and summary/description/runbook annotations.
 */
export function checkAlertCoverage(rulesDoc: unknown, testsDoc: unknown): string[] {
  const problems: string[] = [];
  const firing = new Set<string>();
  const silent = new Set<string>();
  for (const t of arr(obj(testsDoc)?.tests)) {
    for (const a of arr(obj(t)?.alert_rule_test).map(obj)) {
      const name = str(a?.alertname);
      if (name === undefined) continue;
      (arr(a?.exp_alerts).length > 0 ? firing : silent).add(name);
    }
  }
  const rules = arr(obj(rulesDoc)?.groups).flatMap((g) => arr(obj(g)?.rules)).map(obj);
  for (const r of rules) {
    const name = str(r?.alert);
    if (name === undefined) continue;
    if (!firing.has(name)) problems.push(`${name} has no firing test case`);
    if (!silent.has(name)) problems.push(`${name} has no not-firing test case`);
    const sev = str(obj(r?.labels)?.severity);
    if (!sev || !["warning", "major", "critical"].includes(sev)) {
      problems.push(`${name}: severity label missing or not warning|major|critical`);
    }
    const ann = obj(r?.annotations) ?? {};
    for (const k of ["summary", "description", "runbook"]) {
      if (typeof ann[k] !== "string" || ann[k] === "") problems.push(`${name}: no ${k} annotation`);
    }
    if (typeof ann.runbook === "string" && !/^README\.md#runbook-[a-z0-9-]+$/.test(ann.runbook)) {
      problems.push(`${name}: runbook ${ann.runbook} is not a README.md#runbook-... anchor`);
    }
  }
  const known = new Set(alertNames(rulesDoc));
  for (const n of new Set([...firing, ...silent])) {
    if (!known.has(n)) problems.push(`test case for unknown alert ${n}`);
  }
  return problems;
}

/** README anchors referenced by the alerts' runbook annotations. */
export function runbookAnchors(rulesDoc: unknown): string[] {
  const out = new Set<string>();
  for (const r of arr(obj(rulesDoc)?.groups).flatMap((g) => arr(obj(g)?.rules)).map(obj)) {
    const rb = str(obj(r?.annotations)?.runbook);
    if (rb) out.add(rb);
  }
  return [...out].sort();
}

// ------------------------------------------------------------------ metrics

const PROMQL_WORDS = new Set(["and", "or", "unless", "bool", "offset", "inf", "nan"]);

/**
 * Metric names used in a PromQL expression (a small scanner, enough for the
 * kit's expressions): label matchers, range selectors, strings, grouping
 * clauses and Grafana variables are removed, then every identifier not
 * followed by `(` (a function) and not a keyword is a metric name.
 */
export function metricNamesIn(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .replace(/\$\w+/g, "");
  const names = new Set<string>();
  for (const m of s.matchAll(/(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = s.slice(m.index! + m[0].length).trimStart();
    if (rest.startsWith("(") || PROMQL_WORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

/** PromQL expressions of every panel target of a Grafana dashboard, by panel title. */
export function dashboardExprs(dashboard: unknown): Array<{ panel: string; expr: string }> {
  const out: Array<{ panel: string; expr: string }> = [];
  const walk = (panels: unknown[]) => {
    for (const p of panels.map(obj)) {
      if (!p) continue;
      for (const t of arr(p.targets).map(obj)) {
        if (typeof t?.expr === "string") out.push({ panel: String(p.title), expr: t.expr });
      }
      walk(arr(p.panels));
    }
  };
  walk(arr(obj(dashboard)?.panels));
  return out;
}

/**
 * Checks that every metric named in `exprs` is exported by sluice (`known`,
 * histogram series included) or produced by Prometheus itself (`up`).
 */
export function checkMetricNames(
  exprs: Array<{ where: string; expr: string }>,
  known: ReadonlySet<string>,
): string[] {
  const problems: string[] = [];
  for (const { where, expr } of exprs) {
    for (const name of metricNamesIn(expr)) {
      if (name !== "up" && !known.has(name)) {
        problems.push(`${where}: metric ${name} is not exported by sluice`);
      }
    }
  }
  return problems;
}

// ------------------------------------------------------------------- routes

/** A route checker and where its answers come from. */
export interface RouteSource {
  exists: RouteExists;
  /** `http/app.ts` or `README route list`. */
  source: string;
  close(): void;
}

/** The README's route list as a checker (the fallback). */
export function designRoutes(): RouteSource {
  return {
    exists: (path) => Promise.resolve(README_GET_ROUTES.includes(path)),
    source: "README route list",
    close() {},
  };
}

interface AppLike {
  request(path: string): Response | Promise<Response>;
}

/**
 * The real HTTP app when `http/app.ts` exists (built with the fake pipeline
 * of `http/testing.ts`, which the HTTP tests use too): `GET path` exists
 * unless it answers 404 or 405. Otherwise the README's route list.
 * Imported by computed URL so that this file type-checks on its own while
 * the app is being written; an app that exists but cannot be built fails.
 */
export async function appRoutes(): Promise<RouteSource> {
  const appUrl = new URL("http/app.ts", ROOT);
  const testingUrl = new URL("http/testing.ts", ROOT);
  try {
    Deno.statSync(appUrl);
    Deno.statSync(testingUrl);
  } catch {
    return designRoutes();
  }
  const appMod = await import(appUrl.href) as {
    createApp(deps: unknown): AppLike;
    closeApp?(app: AppLike): void;
  };
  const testing = await import(testingUrl.href) as { fakeDeps(): { deps: unknown } };
  const app = appMod.createApp(testing.fakeDeps().deps);
  return {
    async exists(path) {
      const res = await app.request(path);
      await res.body?.cancel();
      return res.status !== 404 && res.status !== 405;
    },
    source: "http/app.ts",
    close: () => appMod.closeApp?.(app),
  };
}
