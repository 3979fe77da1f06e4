/**
 * The requests and answers of the replay driver and the dead-letter store,
 * validated by whoever receives them (the HTTP surface, the CLI) before they
 * reach `replay.ts` and `dlq.ts`.
 *
 * @module
 */
import type { FailureReason } from "../audit/event.ts";

/** Body of `POST /control/replay`, validated. */
export interface ReplayRequest {
  topic: string;
  /** Window start, inclusive, epoch milliseconds. */
  from: number;
  /** Window end, exclusive, epoch milliseconds; always > `from`. */
  to: number;
  /** Records per second, > 0; absent: the driver's default. */
  rate?: number;
  /** Partitions to replay; absent: every partition of the topic. */
  partitions?: number[];
}

/** Answer of starting a replay: started, or the one already running for that topic (HTTP: 409). */
export type ReplayStart =
  | { status: "started"; id: string }
  | { status: "conflict"; runningId: string };

/** Query of `GET /dlq`, validated. */
export interface DlqQuery {
  /** Original topic; absent: every topic. */
  topic?: string;
  /** 1..1000, default 100. */
  limit: number;
  /** Opaque cursor from a previous page's `next_cursor`. */
  cursor?: string;
  /** `failure_reason`; absent: every reason. */
  reason?: FailureReason;
  /** Dead-lettered at or after (epoch ms). */
  from?: number;
  /** Dead-lettered before (epoch ms). */
  to?: number;
  /** `oldest` first (default) or `newest` first (the dashboard's panel). */
  order?: "oldest" | "newest";
  /** Cut `original_payload` to this many characters (`original_payload_truncated`, `original_payload_length`). */
  payloadLimit?: number;
}

/** Body of `POST /dlq/replay` (bulk), validated: every filter optional. */
export interface DlqBulkReplayRequest {
  topic?: string;
  reason?: FailureReason;
  /** Dead-lettered at or after (epoch ms). */
  from?: number;
  /** Dead-lettered before (epoch ms). */
  to?: number;
  /** Records per second, > 0; absent: the replay default. */
  rate?: number;
}

/** One page of dead letters (items are dead letters, README, Internals). */
export interface DlqPage {
  items: Array<Record<string, unknown>>;
  next_cursor?: string;
}
