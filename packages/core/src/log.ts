/**
 * What the packages log through: the shape of pino's logger (`logger.warn({ err }, 'message')`),
 * so a host app hands its own pino logger (or any logger of that shape) to the gateway, and a
 * package never writes to the console itself.
 */
export interface Logger {
  error(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  debug(fields: object, message?: string): void;
  /** A logger whose lines all carry `bindings` (a request id, a component). */
  child(bindings: Record<string, unknown>): Logger;
}

type Level = 'error' | 'warn' | 'info' | 'debug';

/**
 * A Logger on the console, for when the host gave none: warnings and errors only, as
 * `[tera-gw] message {fields}`. `createGateway` uses pino when it is installed.
 */
export function consoleLogger(bindings: Record<string, unknown> = {}): Logger {
  const line = (level: Level) => (fields: object, message?: string) => {
    if (level === 'info' || level === 'debug') return;
    const all = { ...bindings, ...fields };
    const err = (all as { err?: unknown }).err;
    if (err instanceof Error) (all as { err?: unknown }).err = err.message;
    console[level](`[tera-gw] ${message ?? ''}`, Object.keys(all).length ? JSON.stringify(all) : '');
  };
  return {
    error: line('error'),
    warn: line('warn'),
    info: line('info'),
    debug: line('debug'),
    child: (more) => consoleLogger({ ...bindings, ...more }),
  };
}

/**
 * Runs `fn`; if it throws, logs the error at `error` with `what` and carries on. For work whose
 * failure must not stop what follows (a cleanup, a user hook), and must never go unseen.
 */
export function guarded(logger: Logger, what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    logger.error({ err }, `${what} threw`);
  }
}

/** A logger that says one thing at most once per `intervalMs` (a store that is down must not flood the log). */
export function throttled(logger: Logger, intervalMs = 60_000): Pick<Logger, 'warn' | 'error'> {
  let last = -Infinity;
  const once =
    (level: 'warn' | 'error') =>
    (fields: object, message?: string): void => {
      const now = Date.now();
      if (now - last < intervalMs) return;
      last = now;
      logger[level](fields, message);
    };
  return { warn: once('warn'), error: once('error') };
}
