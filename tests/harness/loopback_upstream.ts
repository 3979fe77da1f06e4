/**
 * A loopback HTTP upstream for unit tests of the upstream client and the
 * record path (`Deno.serve` on 127.0.0.1, a free port): the test gives the
 * handler and may swap it; every request seen is kept.
 *
 * @module
 */
import { parseEnvelope } from "../../actors/record/envelope.ts";
import type { SourceRecord } from "../../actors/record/record.ts";

/** The envelope of `r`, or a thrown error naming why it does not parse. */
export function envelopeOf(r: SourceRecord) {
  const e = parseEnvelope(r);
  if (!e.ok) throw new Error(e.message);
  return e.envelope;
}

/** What the loopback upstream answers. */
export type Handler = (req: Request, body: string) => Response | Promise<Response>;

/** A loopback upstream whose behaviour the test swaps; hanging handlers are released on close. */
export function loopbackUpstream(initial: Handler) {
  let handler = initial;
  const ac = new AbortController();
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  const seen: { headers: Headers; body: string }[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    async (req) => {
      const body = await req.text();
      seen.push({ headers: req.headers, body });
      return await handler(req, body);
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/ingest`,
    seen,
    set(h: Handler) {
      handler = h;
    },
    /** A handler that never answers (until close). */
    hang: async () => {
      await released;
      return new Response("late");
    },
    async close() {
      release();
      ac.abort();
      await server.finished;
    },
  };
}
