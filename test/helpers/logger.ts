import type { Logger } from '@tera-gw/core';

export interface LoggedLine {
  level: 'error' | 'warn' | 'info' | 'debug';
  fields: Record<string, unknown>;
  message: string | undefined;
}

/** A logger of pino's shape that keeps every line, child bindings merged in. */
export function recordingLogger(lines: LoggedLine[] = [], bindings: Record<string, unknown> = {}): Logger & { lines: LoggedLine[] } {
  const at =
    (level: LoggedLine['level']) =>
    (fields: object, message?: string): void => {
      lines.push({ level, fields: { ...bindings, ...fields }, message });
    };
  return {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (more) => recordingLogger(lines, { ...bindings, ...more }),
  };
}
