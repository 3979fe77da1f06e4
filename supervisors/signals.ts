/**
 * SIGTERM and SIGINT handling: the first signal starts the graceful shutdown
 * (supervisors/shutdown.ts), a second one forces the exit.
 *
 * The same signal again within {@link DUPLICATE_WINDOW_MS} is the same
 * request, not a second one: Ctrl-C on `deno task start` delivers SIGINT
 * twice a few milliseconds apart (the terminal's, then the one `deno task`
 * forwards to its child), and a supervisor may resend SIGTERM. A deliberate
 * second signal (later, or a different one) still forces exit 3.
 *
 * | Event                                   | Exit code                |
 * | --------------------------------------- | ------------------------ |
 * | first signal, every phase completed     | 0                        |
 * | first signal, a phase failed/timed out  | 1                        |
 * | second signal during the shutdown       | 3 ({@link FORCED_EXIT_CODE}) |
 *
 * ```ts
 * const handlers = installSignalHandlers((signal) => runShutdown(phases, { reason: signal }));
 * // ... and in tests, or to hand over to another owner:
 * handlers.remove();
 * ```
 *
 * @module
 */
import { logger } from "../actors/runtime/logger.ts";
import { type ShutdownReport, type ShutdownStatus, shutdownStatus } from "./shutdown.ts";

const log = logger("signals");

/** Exit code after a second signal cut the graceful shutdown short. */
export const FORCED_EXIT_CODE = 3;
/** A repeat of the first signal within this many ms is a duplicate of it, not a second request. */
export const DUPLICATE_WINDOW_MS = 1000;
/** Exit code when the graceful shutdown ended with a failed or timed-out phase. */
export const UNCLEAN_EXIT_CODE = 1;

/** Exit code for a shutdown report: 0 only when every phase completed. */
export function exitCodeFor(report: ShutdownReport): number {
  return report.clean ? 0 : UNCLEAN_EXIT_CODE;
}

/** Options of {@link installSignalHandlers}. */
export interface SignalHandlerOptions {
  /** Signals to handle. Default `["SIGTERM", "SIGINT"]`. */
  signals?: Deno.Signal[];
  /** Ends the process. Default `Deno.exit`; pass a no-op to only read {@link SignalHandlers.exitCode}. */
  exit?: (code: number) => void;
  /** Read for the forced-exit log line (which phase was cut short). Default {@link shutdownStatus}. */
  status?: ShutdownStatus;
  /** Same-signal repeats within this window are ignored; default {@link DUPLICATE_WINDOW_MS}. */
  duplicateWindowMs?: number;
  /** Clock (ms), for tests; default `performance.now`. */
  now?: () => number;
}

/** Installed handlers. */
export interface SignalHandlers {
  /** Removes the listeners (idempotent). */
  remove(): void;
  /** Resolves with the exit code once one is decided (after the shutdown, or on a second signal). */
  exitCode: Promise<number>;
}

/**
 * Installs handlers for SIGTERM and SIGINT. The first signal calls
 * `onShutdown(signal)` and exits with {@link exitCodeFor} its report (1 if it
 * throws); a second signal logs and exits at once with
 * {@link FORCED_EXIT_CODE}.
 */
export function installSignalHandlers(
  onShutdown: (signal: Deno.Signal) => Promise<ShutdownReport>,
  opts: SignalHandlerOptions = {},
): SignalHandlers {
  const signals = opts.signals ?? ["SIGTERM", "SIGINT"];
  const exit = opts.exit ?? ((code: number) => Deno.exit(code));
  const status = opts.status ?? shutdownStatus;
  const duplicateWindowMs = opts.duplicateWindowMs ?? DUPLICATE_WINDOW_MS;
  const now = opts.now ?? (() => performance.now());
  const decided = Promise.withResolvers<number>();
  let first: Deno.Signal | undefined;
  let firstAt = 0;
  let exited = false;

  const finish = (code: number) => {
    if (exited) return;
    exited = true;
    decided.resolve(code);
    exit(code);
  };

  const graceful = async (signal: Deno.Signal) => {
    let code: number;
    try {
      const report = await onShutdown(signal);
      code = exitCodeFor(report);
      log.info("exiting after graceful shutdown", { signal, code, clean: report.clean });
    } catch (e) {
      code = UNCLEAN_EXIT_CODE;
      log.error("graceful shutdown failed", { signal, code, error: e });
    }
    finish(code);
  };

  const handler = (signal: Deno.Signal) => () => {
    if (first === undefined) {
      first = signal;
      firstAt = now();
      log.warn("signal received; shutting down gracefully (send it again to force)", { signal });
      void graceful(signal);
      return;
    }
    const afterMs = now() - firstAt;
    if (signal === first && afterMs < duplicateWindowMs) {
      log.debug("same signal again within the duplicate window; ignored", {
        signal,
        after_ms: Math.round(afterMs),
      });
      return;
    }
    log.error("second signal; forcing exit", {
      signal,
      first,
      after_ms: Math.round(afterMs),
      shutdown: status.describe(),
      code: FORCED_EXIT_CODE,
    });
    finish(FORCED_EXIT_CODE);
  };

  const installed: [Deno.Signal, () => void][] = [];
  for (const signal of signals) {
    const listener = handler(signal);
    try {
      Deno.addSignalListener(signal, listener);
      installed.push([signal, listener]);
    } catch (e) {
      // SIGTERM is not available on Windows: keep the others.
      log.warn("cannot listen to signal", { signal, error: e });
    }
  }

  return {
    exitCode: decided.promise,
    remove: () => {
      for (const [signal, listener] of installed.splice(0)) {
        Deno.removeSignalListener(signal, listener);
      }
    },
  };
}
