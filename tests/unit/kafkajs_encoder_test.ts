/**
 * The in-place varint writers of `actors/log/kafkajs_encoder.ts` give the
 * bytes kafkajs's own writers give, and kafkajs's record encoding uses them.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import Encoder from "kafkajs/src/protocol/encoder.js";
import Record from "kafkajs/src/protocol/recordBatch/record/v0/index.js";
import RecordBatchModule from "kafkajs/src/protocol/recordBatch/v0/index.js";
import { originalVarintWriters, patchKafkajsEncoder } from "../../actors/log/kafkajs_encoder.ts";

type Enc = {
  buffer: Buffer;
  writeUVarInt(v: number): Enc;
  writeVarInt(v: number): Enc;
  writeVarLong(v: unknown): Enc;
};
const NewEncoder = Encoder as unknown as new (size?: number) => Enc;

/** The bytes of `write` on a fresh encoder, with kafkajs's original writers. */
function original(write: (e: Enc) => void): Buffer {
  const e = new NewEncoder();
  const o = e as unknown as Record<string, unknown>;
  o.writeUVarInt = originalVarintWriters.writeUVarInt;
  o.writeVarLong = originalVarintWriters.writeVarLong;
  write(e);
  return e.buffer;
}

function patched(write: (e: Enc) => void): Buffer {
  patchKafkajsEncoder();
  const e = new NewEncoder();
  write(e);
  return e.buffer;
}

/** A deterministic pseudo-random generator (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INT_EDGES = [
  0,
  1,
  -1,
  63,
  64,
  -64,
  -65,
  127,
  128,
  255,
  16383,
  16384,
  2 ** 21 - 1,
  2 ** 21,
  2 ** 28 - 1,
  2 ** 28,
  2 ** 31 - 1,
  -(2 ** 31),
  2 ** 32 - 1,
  NaN,
];

Deno.test("patched writeUVarInt and writeVarInt give kafkajs's bytes on edge and random values", () => {
  const r = rng(7);
  const values = [...INT_EDGES];
  for (let i = 0; i < 20_000; i++) values.push(Math.floor((r() - 0.5) * 2 ** 33));
  for (const v of values) {
    assert.deepEqual(
      patched((e) => e.writeUVarInt(v)),
      original((e) => e.writeUVarInt(v)),
      `u${v}`,
    );
    assert.deepEqual(patched((e) => e.writeVarInt(v)), original((e) => e.writeVarInt(v)), `${v}`);
  }
});

Deno.test("patched writeVarLong gives kafkajs's bytes for numbers, strings and bigints of the int64 range", () => {
  const r = rng(11);
  const values: unknown[] = [
    ...INT_EDGES,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    "9223372036854775807",
    "-9223372036854775808",
    "1796608620673",
  ];
  for (let i = 0; i < 5_000; i++) {
    values.push(Math.floor((r() - 0.5) * 2 ** 53));
    values.push(String(BigInt.asIntN(64, BigInt(Math.floor(r() * 2 ** 32)) << 31n)));
  }
  for (const v of values) {
    assert.deepEqual(patched((e) => e.writeVarLong(v)), original((e) => e.writeVarLong(v)), `${v}`);
  }
});

Deno.test("a record batch encoded by kafkajs with the patch is byte for byte the unpatched one", async () => {
  const value = Buffer.from(
    JSON.stringify({ outcome: "delivered", é: "ünïcode", n: 1 }).repeat(12),
  );
  const records = Array.from({ length: 300 }, (_, i) => ({
    offsetDelta: i,
    timestampDelta: i * 37 - 100,
    key: i % 7 === 0 ? null : Buffer.from(`events/3/${100_000 + i}`),
    value: i % 11 === 0 ? null : value,
    headers: i % 3 === 0 ? {} : { "content-type": "application/json", h: ["a", "b"] },
  }));
  const { RecordBatch } = RecordBatchModule as unknown as {
    RecordBatch: (o: Record<string, unknown>) => Promise<{ buffer: Buffer }>;
  };
  const encode = async () =>
    (await RecordBatch({
      compression: 0,
      firstOffset: 0,
      firstTimestamp: 1796608620673,
      maxTimestamp: 1796608629999,
      lastOffsetDelta: records.length - 1,
      producerId: 4242,
      producerEpoch: 3,
      firstSequence: 17,
      records: records.map((r) => (Record as unknown as (r: unknown) => unknown)(r)),
    })).buffer;
  const proto = (Encoder as unknown as { prototype: Record<string, unknown> }).prototype;
  const saved = { u: proto.writeUVarInt, l: proto.writeVarLong, flag: proto.__sluiceVarints };
  let before: Buffer;
  try {
    proto.writeUVarInt = originalVarintWriters.writeUVarInt;
    proto.writeVarLong = originalVarintWriters.writeVarLong;
    proto.__sluiceVarints = false;
    before = await encode();
    patchKafkajsEncoder();
    // The patched prototype is the one kafkajs's own record encoder uses.
    let calls = 0;
    const inPlace = proto.writeUVarInt as (this: unknown, v: number) => unknown;
    proto.writeUVarInt = function (this: unknown, v: number) {
      calls++;
      return inPlace.call(this, v);
    };
    const after = await encode();
    assert.ok(calls >= records.length * 4, `${calls} varints written by the patched method`);
    assert.equal(after.length, before.length);
    assert.equal(Buffer.compare(after, before), 0, "same bytes, so the same CRC");
  } finally {
    proto.writeUVarInt = saved.u;
    proto.writeVarLong = saved.l;
    proto.__sluiceVarints = saved.flag;
  }
});
