// Structured logs as JSON lines on stderr, shared by the cluster and the worker daemons.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export type LogSink = (line: string) => void;

export function jsonLogger(
  base: Record<string, unknown> = {},
  min: LogLevel = (process.env.CANOPY_LOG_LEVEL as LogLevel | undefined) ?? 'info',
  sink: LogSink = (l) => process.stderr.write(l),
): Logger {
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[level] < (ORDER[min] ?? 20)) return;
    sink(`${JSON.stringify({ ts: new Date().toISOString(), level, msg, ...base, ...fields })}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => jsonLogger({ ...base, ...f }, min, sink),
  };
}

/** A logger that keeps lines in memory, for tests that check what was logged. */
export function memoryLogger(): Logger & { lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const l = jsonLogger({}, 'debug', (line) => lines.push(JSON.parse(line) as Record<string, unknown>));
  return Object.assign(l, { lines });
}
