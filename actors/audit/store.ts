/**
 * Where audit batches go: the {@link AuditStore} interface, with
 * {@link S3AuditStore} (S3 or Ceph RGW, path-style addressing) and
 * {@link FsAuditStore} (the same keys as files under a directory, for local
 * mode). Also the hour prefix of object keys ({@link hourPrefix}) and the gzip JSON
 * Lines encoding of a batch ({@link encodeBatch}, {@link decodeBatch}).
 *
 * Object keys: `{prefix}/{yyyy}/{mm}/{dd}/{hh}/{auditTopic}-{partition}-{first}-{last}.jsonl.gz`
 * (hour of the audit record, audit-topic partition and offsets, 20 digits):
 * see `actors/audit/uploader.ts`, which writes them. The audit report lists
 * them by hour prefix.
 *
 * @module
 */
import type { S3Client } from "@aws-sdk/client-s3";
import { gunzip, gzip } from "node:zlib";
import { syncDir } from "../runtime/durable_fs.ts";
import { promisify } from "node:util";
import type { AuditEvent } from "./event.ts";

type S3Sdk = typeof import("@aws-sdk/client-s3");
let s3Sdk: Promise<S3Sdk> | undefined;
/** The S3 SDK, loaded at the first use of an {@link S3AuditStore} (not by local mode). */
const loadS3Sdk = () => s3Sdk ??= import("@aws-sdk/client-s3");

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/** Options of the store calls. */
export interface StoreCallOptions {
  signal?: AbortSignal;
}

/** An object store for audit batches. */
export interface AuditStore {
  /** Writes (or overwrites) one object. Resolves once the store acknowledged it. */
  put(key: string, body: Uint8Array, opts?: StoreCallOptions): Promise<void>;
  /** Keys starting with `prefix`, sorted. */
  list(prefix: string, opts?: StoreCallOptions): Promise<string[]>;
  /** The bytes of one object. */
  get(key: string, opts?: StoreCallOptions): Promise<Uint8Array>;
  /** Human-readable location, for logs and reports. */
  describe(): string;
  /** Releases connections. */
  close(): void;
}

/** Options of {@link S3AuditStore}. */
export interface S3AuditStoreOptions {
  endpoint: string;
  bucket: string;
  /** Default `us-east-1`. */
  region?: string;
  accessKey: string;
  secretKey: string;
  /** Timeout of one request (ms); default 10000. */
  requestTimeoutMs?: number;
  /** Attempts per request inside the SDK (the trail retries on top); default 2. */
  maxAttempts?: number;
}

function isNotFound(e: unknown): boolean {
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === "NotFound" || err?.name === "NoSuchBucket" ||
    err?.$metadata?.httpStatusCode === 404;
}

/**
 * Audit store on S3 or Ceph RGW (path-style addressing). The bucket is
 * created at the first write when it is missing.
 */
export class S3AuditStore implements AuditStore {
  readonly bucket: string;
  readonly #s3: Promise<{ client: S3Client; sdk: S3Sdk }>;
  #client: S3Client | undefined;
  readonly #endpoint: string;
  readonly #timeoutMs: number;
  #bucketReady: Promise<void> | null = null;

  constructor(opts: S3AuditStoreOptions) {
    this.bucket = opts.bucket;
    this.#endpoint = opts.endpoint;
    this.#timeoutMs = opts.requestTimeoutMs ?? 10_000;
    this.#s3 = loadS3Sdk().then((sdk) => {
      const client = new sdk.S3Client({
        endpoint: opts.endpoint,
        region: opts.region ?? "us-east-1",
        forcePathStyle: true,
        credentials: { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey },
        maxAttempts: opts.maxAttempts ?? 2,
        // Ceph RGW does not know every checksum the SDK adds by default.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      });
      this.#client = client;
      return { client, sdk };
    });
  }

  #signal(opts?: StoreCallOptions): AbortSignal {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    return opts?.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  }

  /** Creates the bucket when missing (once; retried after a failure). */
  ensureBucket(opts?: StoreCallOptions): Promise<void> {
    if (!this.#bucketReady) {
      this.#bucketReady = (async () => {
        const { client, sdk } = await this.#s3;
        try {
          await client.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }), {
            abortSignal: this.#signal(opts),
          });
        } catch (e) {
          if (!isNotFound(e)) throw e;
          try {
            await client.send(new sdk.CreateBucketCommand({ Bucket: this.bucket }), {
              abortSignal: this.#signal(opts),
            });
          } catch (e2) {
            const name = (e2 as { name?: string })?.name;
            if (name !== "BucketAlreadyOwnedByYou" && name !== "BucketAlreadyExists") throw e2;
          }
        }
      })();
      this.#bucketReady.catch(() => {
        this.#bucketReady = null;
      });
    }
    return this.#bucketReady;
  }

  async put(key: string, body: Uint8Array, opts?: StoreCallOptions): Promise<void> {
    await this.ensureBucket(opts);
    const { client, sdk } = await this.#s3;
    await client.send(
      new sdk.PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: "application/x-ndjson",
        ContentEncoding: "gzip",
      }),
      { abortSignal: this.#signal(opts) },
    );
  }

  async list(prefix: string, opts?: StoreCallOptions): Promise<string[]> {
    const { client, sdk } = await this.#s3;
    const keys: string[] = [];
    let token: string | undefined;
    do {
      let out;
      try {
        out = await client.send(
          new sdk.ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            ContinuationToken: token,
          }),
          { abortSignal: this.#signal(opts) },
        );
      } catch (e) {
        if (isNotFound(e)) return [];
        throw e;
      }
      for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  async get(key: string, opts?: StoreCallOptions): Promise<Uint8Array> {
    const { client, sdk } = await this.#s3;
    const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key: key }), {
      abortSignal: this.#signal(opts),
    });
    if (!out.Body) throw new Error(`Empty answer for audit object: ${key}`);
    return await out.Body.transformToByteArray();
  }

  describe(): string {
    return `s3 ${this.#endpoint} bucket ${this.bucket}`;
  }

  close(): void {
    if (this.#client) this.#client.destroy();
    else void this.#s3.then(({ client }) => client.destroy(), () => {});
  }
}

function checkKey(key: string): void {
  if (key === "" || key.startsWith("/") || key.split("/").some((p) => p === ".." || p === ".")) {
    throw new Error(`Invalid audit object key: ${key}`);
  }
}

/**
 * Audit store on the local file system: the object with key `k` is the file
 * `{dir}/k`. Writes go to a temporary file in the same directory, are
 * fsync'd, then renamed over the target (atomic).
 */
export class FsAuditStore implements AuditStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir.replace(/\/+$/, "");
  }

  async put(key: string, body: Uint8Array, opts?: StoreCallOptions): Promise<void> {
    checkKey(key);
    opts?.signal?.throwIfAborted();
    const path = `${this.dir}/${key}`;
    const parent = path.slice(0, path.lastIndexOf("/"));
    await Deno.mkdir(parent, { recursive: true });
    const tmp = `${parent}/.tmp-${crypto.randomUUID()}`;
    try {
      const f = await Deno.open(tmp, { write: true, createNew: true });
      try {
        let off = 0;
        while (off < body.length) off += await f.write(body.subarray(off));
        await f.syncData();
      } finally {
        f.close();
      }
      await Deno.rename(tmp, path);
      // The rename itself must survive a crash too: sync the directory entry.
      await syncDir(parent);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }

  async list(prefix: string, _opts?: StoreCallOptions): Promise<string[]> {
    const cut = prefix.lastIndexOf("/");
    const base = cut >= 0 ? prefix.slice(0, cut) : "";
    const keys: string[] = [];
    const walk = async (rel: string) => {
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(rel ? `${this.dir}/${rel}` : this.dir));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return;
        throw e;
      }
      for (const e of entries) {
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory) {
          if (key.startsWith(prefix) || prefix.startsWith(key + "/")) await walk(key);
        } else if (e.isFile && !e.name.startsWith(".tmp-") && key.startsWith(prefix)) {
          keys.push(key);
        }
      }
    };
    await walk(base);
    return keys.sort();
  }

  async get(key: string, _opts?: StoreCallOptions): Promise<Uint8Array> {
    checkKey(key);
    return await Deno.readFile(`${this.dir}/${key}`);
  }

  describe(): string {
    return `fs ${this.dir}`;
  }

  close(): void {}
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** The `{prefix}/{yyyy}/{mm}/{dd}/{hh}/` part of a key for a time (UTC). */
export function hourPrefix(prefix: string, time: Date): string {
  return `${prefix}/${time.getUTCFullYear()}/${pad(time.getUTCMonth() + 1)}/${
    pad(time.getUTCDate())
  }/${pad(time.getUTCHours())}/`;
}

/** Encodes events as gzip JSON Lines. */
export async function encodeBatch(events: AuditEvent[]): Promise<Uint8Array> {
  const text = events.map((e) => JSON.stringify(e)).join("\n") + "\n";
  return new Uint8Array(await gzipAsync(new TextEncoder().encode(text)));
}

/** Decodes a gzip JSON Lines object; lines that are not JSON objects are counted in `invalid`. */
export async function decodeBatch(
  body: Uint8Array,
): Promise<{ events: AuditEvent[]; invalid: number }> {
  const text = new TextDecoder().decode(await gunzipAsync(body));
  const events: AuditEvent[] = [];
  let invalid = 0;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const v = JSON.parse(line);
      if (v && typeof v === "object" && !Array.isArray(v)) events.push(v as AuditEvent);
      else invalid++;
    } catch {
      invalid++;
    }
  }
  return { events, invalid };
}
