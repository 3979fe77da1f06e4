/**
 * A real one-node Ceph cluster with RGW for the tests, from Debian's
 * packages: one monitor, one memstore OSD, one radosgw with a beast endpoint
 * on loopback, auth `none`, and one S3 user.
 *
 * @module
 */
import { type Daemon, freePort, run, startDaemon, stopDaemon, tailFile, waitFor } from "./procs.ts";

/** What a test or the runner needs to reach, stop and restart RGW. */
export interface CephState {
  version: string;
  endpoint: string;
  region: string;
  accessKey: string;
  secretKey: string;
  dir: string;
  conf: string;
  rgwPort: number;
  daemons: { mon?: Daemon; osd?: Daemon; rgw?: Daemon };
}

function uuid(): string {
  return crypto.randomUUID();
}

/** Writes the cluster configuration into `dir`. */
export async function prepareCeph(dir: string): Promise<CephState> {
  const monPort = freePort();
  const rgwPort = freePort();
  const fsid = uuid();
  for (const d of ["run", "log", "mon/a", "osd/0", "rgw"]) {
    await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  }
  const conf = `${dir}/ceph.conf`;
  await Deno.writeTextFile(
    conf,
    `[global]
fsid = ${fsid}
mon_host = v2:127.0.0.1:${monPort}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_bind_msgr1 = false
osd_objectstore = memstore
memstore_device_bytes = 2147483648
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
run_dir = ${dir}/run
log_file = ${dir}/log/$name.log
admin_socket = ${dir}/run/$name.asok
pid_file = ${dir}/run/$name.pid
osd_max_object_name_len = 256
osd_max_object_namespace_len = 64
[mon.a]
mon_data = ${dir}/mon/a
[osd.0]
osd_data = ${dir}/osd/0
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw_data = ${dir}/rgw
rgw_dns_name = 127.0.0.1
`,
  );
  const version = (await run("ceph", ["--version"], { what: "ceph --version" })).trim();
  return {
    version,
    endpoint: `http://127.0.0.1:${rgwPort}`,
    region: "us-east-1",
    accessKey: "sluice-test-access",
    secretKey: "sluice-test-secret",
    dir,
    conf,
    rgwPort,
    daemons: {},
  };
}

/** Creates and starts monitor, OSD and RGW, and the S3 user. */
export async function launchCeph(state: CephState): Promise<void> {
  const c = ["-c", state.conf];
  const fsid = /fsid = (.*)/.exec(Deno.readTextFileSync(state.conf))![1];
  const monHost = /mon_host = (.*)/.exec(Deno.readTextFileSync(state.conf))![1];
  await run("monmaptool", [
    "--create",
    "--fsid",
    fsid,
    "--addv",
    "a",
    `[${monHost}]`,
    `${state.dir}/monmap`,
    ...c,
  ], {
    what: "monmaptool",
  });
  await run("ceph-mon", [...c, "--mkfs", "-i", "a", "--monmap", `${state.dir}/monmap`], {
    what: "ceph-mon --mkfs",
  });
  state.daemons.mon = await startDaemon("ceph-mon", ["ceph-mon", ...c, "-f", "-i", "a"], {
    log: `${state.dir}/log/mon.stdout`,
  });
  const osdUuid = uuid();
  await run("timeout", ["60", "ceph", ...c, "osd", "new", osdUuid], { what: "ceph osd new" });
  await run("ceph-osd", [...c, "-i", "0", "--mkfs", "--osd-uuid", osdUuid], {
    what: "ceph-osd --mkfs",
  });
  state.daemons.osd = await startDaemon("ceph-osd", ["ceph-osd", ...c, "-f", "-i", "0"], {
    log: `${state.dir}/log/osd.stdout`,
  });
  await waitFor(
    async () => (await run("timeout", ["10", "ceph", ...c, "osd", "stat"])).includes("1 up"),
    {
      timeoutMs: 60_000,
      intervalMs: 250,
      message: `the Ceph OSD to come up\n${tailFile(`${state.dir}/log/osd.0.log`, 20)}`,
    },
  );
  await launchRgw(state);
  await run("radosgw-admin", [
    ...c,
    "user",
    "create",
    "--uid=sluice-test",
    "--display-name=sluice test",
    `--access-key=${state.accessKey}`,
    `--secret-key=${state.secretKey}`,
  ], { what: "radosgw-admin user create" });
}

/** Starts radosgw and waits until it answers HTTP. */
export async function launchRgw(state: CephState, timeoutMs = 90_000): Promise<Daemon> {
  const rgw = await startDaemon("radosgw", [
    "radosgw",
    "-c",
    state.conf,
    "-f",
    "-n",
    "client.rgw.a",
  ], {
    log: `${state.dir}/log/rgw.stdout`,
  });
  state.daemons.rgw = rgw;
  await waitFor(async () => {
    const res = await fetch(state.endpoint, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status < 500;
  }, {
    timeoutMs,
    intervalMs: 200,
    message: `radosgw to answer on ${state.endpoint}\n${
      tailFile(`${state.dir}/log/client.rgw.a.log`, 20)
    }`,
  });
  return rgw;
}

/** Stops radosgw (SIGKILL by default: an abrupt outage). */
export async function haltRgw(state: CephState, signal: Deno.Signal = "SIGKILL"): Promise<void> {
  if (state.daemons.rgw) await stopDaemon(state.daemons.rgw, { signal });
}

/** Every log file of the cluster, for failure reports. */
export function cephLogs(state: CephState): string[] {
  return ["log/mon.a.log", "log/osd.0.log", "log/client.rgw.a.log", "log/rgw.stdout"].map((f) =>
    `${state.dir}/${f}`
  );
}
