/**
 * Profiling helpers of `deno task bench --profile DIR` (README, Benchmarks:
 * "Where the time goes"): the summary of a V8 CPU profile (`--cpu-prof`) by
 * self time per function and per module, a heap snapshot taken over the
 * inspector protocol (`--inspect`) from a running sluice, and its summary by
 * constructor (count and shallow size of the objects reachable at that
 * moment: the snapshot collects garbage first), and the allocations by
 * site over a few seconds (V8's sampling heap profiler).
 *
 * ```ts
 * console.log(summarizeCpuProfile(await Deno.readTextFile("x.cpuprofile")));
 * await takeHeapSnapshot("127.0.0.1:9229", "steady.heapsnapshot");
 * console.log(summarizeHeapSnapshot(await Deno.readTextFile("steady.heapsnapshot")));
 * ```
 *
 * Also runnable: `deno run -A tests/bench/profile.ts FILE.cpuprofile|FILE.heapsnapshot [TOP]`.
 *
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

/** Where a script URL belongs: `npm:<package>`, a Deno extension, or the repository path. */
export function moduleOf(url: string): string {
  if (!url) return "(V8: native, GC, program)";
  const npm = url.match(/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)/) ??
    url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
  if (npm) return `npm:${npm[1]}`;
  if (url.startsWith("ext:") || url.startsWith("node:")) return url.split("/")[0];
  const repo = url.match(/\/((?:actors|supervisors|http|machines|compose)\/.*|main\.ts)$/);
  return repo ? repo[1] : url;
}

/** Self time of a CPU profile (idle excluded) by function and by module, as text. */
export function summarizeCpuProfile(json: string, top = 15): string {
  const p = JSON.parse(json) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + dt);
  }
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === "(idle)") continue;
    total += us;
    const where = moduleOf(cf.url);
    const name = `${cf.functionName || "(anonymous)"} ${where}${
      cf.url ? `:${cf.lineNumber + 1}` : ""
    }`;
    fn.set(name, (fn.get(name) ?? 0) + us);
    const m = cf.url ? where : cf.functionName;
    mod.set(m, (mod.get(m) ?? 0) + us);
  }
  const table = (title: string, m: Map<string, number>) =>
    [
      `${title} (${(total / 1000).toFixed(0)} ms of CPU sampled, idle excluded)`,
      ...[...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, us]) =>
        `${(100 * us / total).toFixed(1).padStart(5)} % ${
          (us / 1000).toFixed(0).padStart(6)
        } ms  ${k}`
      ),
    ].join("\n");
  return `${table("Self time by function", fn)}\n\n${table("Self time by module", mod)}`;
}

/**
 * Takes a heap snapshot of the process whose inspector listens on `hostPort`
 * (`--inspect=hostPort`) and writes it to `path`.
 */
export async function takeHeapSnapshot(hostPort: string, path: string): Promise<void> {
  const targets = await (await fetch(`http://${hostPort}/json/list`)).json() as {
    webSocketDebuggerUrl: string;
  }[];
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  let writes = Promise.resolve();
  try {
    await new Promise<void>((resolve, reject) => {
      ws.onmessage = (m) => {
        const msg = JSON.parse(m.data as string);
        if (msg.method === "HeapProfiler.addHeapSnapshotChunk") {
          const bytes = enc.encode(msg.params.chunk);
          writes = writes.then(async () => {
            for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
          });
        } else if (msg.id === 1) {
          if (msg.error) reject(new Error(JSON.stringify(msg.error)));
          else resolve();
        }
      };
      ws.onclose = () => reject(new Error("inspector connection closed"));
      ws.send(JSON.stringify({ id: 1, method: "HeapProfiler.takeHeapSnapshot", params: {} }));
    });
    await writes;
  } finally {
    ws.onclose = null;
    ws.close();
    file.close();
  }
}

/**
 * URLs of every script the process behind the inspector at `hostPort` has
 * loaded so far (`Debugger.enable` reports each one already parsed).
 */
export async function loadedScripts(hostPort: string): Promise<string[]> {
  const urls: string[] = [];
  const session = await inspectorSession(hostPort, (msg) => {
    if (msg.method === "Debugger.scriptParsed") {
      urls.push((msg.params as { url: string }).url);
    }
  });
  try {
    // The replayed scriptParsed events all come before the command's answer.
    await session.send("Debugger.enable");
    await session.send("Debugger.disable");
  } finally {
    session.close();
  }
  return urls;
}

/** Sends CDP commands over one inspector connection; `events` sees every event. */
async function inspectorSession(hostPort: string, events: (msg: Record<string, unknown>) => void) {
  const targets = await (await fetch(`http://${hostPort}/json/list`)).json() as {
    webSocketDebuggerUrl: string;
  }[];
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let id = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data as string);
    if (msg.id !== undefined && waiting.has(msg.id)) {
      const w = waiting.get(msg.id)!;
      waiting.delete(msg.id);
      if (msg.error) w.reject(new Error(JSON.stringify(msg.error)));
      else w.resolve(msg.result);
    } else events(msg);
  };
  ws.onclose = () => {
    for (const w of waiting.values()) w.reject(new Error("inspector connection closed"));
  };
  return {
    send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
      const n = ++id;
      return new Promise((resolve, reject) => {
        waiting.set(n, { resolve, reject });
        ws.send(JSON.stringify({ id: n, method, params }));
      });
    },
    close() {
      ws.onclose = null;
      ws.close();
    },
  };
}

interface SamplingNode {
  callFrame: CallFrame;
  selfSize: number;
  children: SamplingNode[];
}

/**
 * Samples allocations for `ms` milliseconds (V8's sampling heap profiler,
 * objects later collected included: the allocation rate by site), writes the
 * profile to `path` and returns its summary by function and by module.
 */
export async function sampleAllocations(
  hostPort: string,
  ms: number,
  path: string,
  top = 15,
): Promise<string> {
  const s = await inspectorSession(hostPort, () => {});
  let profile: { head: SamplingNode };
  try {
    await s.send("HeapProfiler.enable");
    await s.send("HeapProfiler.startSampling", {
      samplingInterval: 16384,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    await new Promise((r) => setTimeout(r, ms));
    profile = (await s.send("HeapProfiler.stopSampling") as { profile: { head: SamplingNode } })
      .profile;
  } finally {
    s.close();
  }
  await Deno.writeTextFile(path, JSON.stringify(profile));
  const fn = new Map<string, number>();
  const mod = new Map<string, number>();
  let total = 0;
  const walk = (n: SamplingNode) => {
    if (n.selfSize > 0) {
      const cf = n.callFrame;
      const where = moduleOf(cf.url);
      const name = `${cf.functionName || "(anonymous)"} ${where}${
        cf.url ? `:${cf.lineNumber + 1}` : ""
      }`;
      fn.set(name, (fn.get(name) ?? 0) + n.selfSize);
      mod.set(where, (mod.get(where) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  walk(profile.head);
  const table = (title: string, m: Map<string, number>) =>
    [
      `${title} (${(total / 1e6).toFixed(0)} MB allocated in ${ms} ms, sampled)`,
      ...[...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, b]) =>
        `${(100 * b / total).toFixed(1).padStart(5)} % ${(b / 1e6).toFixed(1).padStart(7)} MB  ${k}`
      ),
    ].join("\n");
  return `${table("Allocations by function", fn)}\n\n${table("Allocations by module", mod)}`;
}

/** Objects of a heap snapshot by constructor: count and shallow size, largest first, as text. */
export function summarizeHeapSnapshot(json: string, top = 15): string {
  const s = JSON.parse(json) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = s.snapshot.meta.node_fields;
  const stride = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const types = s.snapshot.meta.node_types[0];
  const groups = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < s.nodes.length; i += stride) {
    const type = types[s.nodes[i + typeAt]];
    const size = s.nodes[i + sizeAt];
    total += size;
    const name = type === "object" || type === "closure"
      ? `${s.strings[s.nodes[i + nameAt]]}${type === "closure" ? " (closure)" : ""}`
      : `(${type})`;
    const g = groups.get(name) ?? { count: 0, bytes: 0 };
    g.count++;
    g.bytes += size;
    groups.set(name, g);
  }
  return [
    `Reachable heap by constructor (${(total / 1e6).toFixed(1)} MB shallow in all)`,
    ...[...groups].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, top).map(([k, g]) =>
      `${(g.bytes / 1e6).toFixed(2).padStart(7)} MB ${String(g.count).padStart(8)}  ${
        k.slice(0, 100)
      }`
    ),
  ].join("\n");
}

if (import.meta.main) {
  const [path, top] = Deno.args;
  const text = await Deno.readTextFile(path);
  console.log(
    path.endsWith(".heapsnapshot")
      ? summarizeHeapSnapshot(text, Number(top ?? 15))
      : summarizeCpuProfile(text, Number(top ?? 15)),
  );
}
