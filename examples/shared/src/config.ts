import { GPT_OSS_20B } from '@tera-gw/core';

/** A configuration mistake: one line naming the variable (or the keys-file field), printed without a stack. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** What `pnpm start` and `pnpm start:koa` read from the environment, checked whole before anything starts. */
export interface ServerConfig {
  port: number;
  host: string;
  /** vLLM base URLs (host names expand to every address); undefined: two embedded simulators. */
  upstreamUrls: string[] | undefined;
  simulator: { ttftMs: number; itlMs: number };
  /** Path of the keys file; undefined: one development key for this run. */
  keysFile: string | undefined;
  redisUrl: string | undefined;
  tracesExporter: 'console' | 'otlp' | undefined;
  routing: 'cache-aware' | 'least-request' | undefined;
  responsesSecrets: string[];
  responsesStore: boolean;
  cacheIsolation: 'key' | 'team' | 'none' | undefined;
  cacheSaltSecret: string | undefined;
  aliases: Record<string, string | { model: string; hidden?: boolean }> | undefined;
  admission: boolean;
  maxNumSeqs: number | undefined;
  fallback: { url: string; apiKey?: string; model?: string } | undefined;
  overflowAfterMs: number;
  passthrough: string[];
  dnsRefreshMs: number | undefined;
  /** Resume streams whose replica fails mid-way on another replica. */
  resume: boolean;
  logLevel: (typeof LOG_LEVELS)[number];
  logFormat: 'json' | 'pretty';
}

type Env = Readonly<Record<string, string | undefined>>;

/** Reads one variable at a time; each mistake is thrown as one line naming the variable and what it got. */
class EnvReader {
  constructor(private readonly env: Env) {}

  text(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value ? value : undefined;
  }

  list(name: string): string[] {
    return (this.text(name) ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
    const value = this.text(name);
    if (value === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(value))
      throw new ConfigError(`${name} must be one of ${allowed.join(', ')}; got '${value}'`);
    return value as T;
  }

  integer(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const value = this.text(name);
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max)
      throw new ConfigError(`${name} must be a whole number from ${min} to ${max}; got '${value}'`);
    return n;
  }

  url(name: string, value: string, protocols: readonly string[]): string {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new ConfigError(`${name}: '${value}' is not a URL`);
    }
    if (!protocols.includes(url.protocol))
      throw new ConfigError(`${name}: '${value}' must start with ${protocols.map((p) => `${p}//`).join(' or ')}`);
    return value;
  }
}

function parseAliases(text: string | undefined): ServerConfig['aliases'] {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`MODEL_ALIASES is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ConfigError(`MODEL_ALIASES must be a JSON object such as {"gpt-4o-mini":"${GPT_OSS_20B}"}`);
  for (const [alias, target] of Object.entries(value as Record<string, unknown>)) {
    const model = typeof target === 'object' && target !== null ? (target as { model?: unknown }).model : target;
    if (model !== GPT_OSS_20B)
      throw new ConfigError(`MODEL_ALIASES.${alias} must name ${GPT_OSS_20B}, the model this gateway serves; got ${JSON.stringify(model)}`);
  }
  return value as ServerConfig['aliases'];
}

function parseUpstream(read: EnvReader): Pick<ServerConfig, 'upstreamUrls' | 'fallback' | 'overflowAfterMs' | 'admission'> {
  const urls = read.list('UPSTREAM_URLS').map((u, i) => read.url(`UPSTREAM_URLS[${i}]`, u, ['http:', 'https:']));
  const fallbackUrl = read.text('FALLBACK_URL');
  const fallback = fallbackUrl
    ? {
        url: read.url('FALLBACK_URL', fallbackUrl, ['http:', 'https:']),
        ...(read.text('FALLBACK_API_KEY') ? { apiKey: read.text('FALLBACK_API_KEY')! } : {}),
        ...(read.text('FALLBACK_MODEL') ? { model: read.text('FALLBACK_MODEL')! } : {}),
      }
    : undefined;
  const admission = read.oneOf('ADMISSION', ['on', 'off']) !== 'off';
  if (fallback && !admission) throw new ConfigError('FALLBACK_URL takes overflow from admission: it needs ADMISSION on');
  return {
    upstreamUrls: urls.length ? urls : undefined,
    fallback,
    admission,
    overflowAfterMs: read.integer('OVERFLOW_AFTER_MS', 0) ?? 5000,
  };
}

/**
 * The server's configuration from the environment. Everything is checked here, before a
 * simulator or a socket is started: a mistake is a ConfigError of one line.
 */
export function loadConfig(env: Env, defaultPort: number): ServerConfig {
  const read = new EnvReader(env);
  const redisUrl = read.text('REDIS_URL');
  const passthrough = read.list('PASSTHROUGH');
  for (const [i, path] of passthrough.entries())
    if (!/^\/[A-Za-z0-9/_-]+$/.test(path)) throw new ConfigError(`PASSTHROUGH[${i}] must be a plain path such as /tokenize; got '${path}'`);
  const exporter = read.oneOf('OTEL_TRACES_EXPORTER', ['console', 'otlp', 'none']);
  return {
    port: read.integer('PORT', 0, 65535) ?? defaultPort,
    host: read.text('HOST') ?? '127.0.0.1',
    ...parseUpstream(read),
    simulator: { ttftMs: read.integer('SIM_TTFT_MS', 0) ?? 80, itlMs: read.integer('SIM_ITL_MS', 0) ?? 8 },
    keysFile: read.text('GATEWAY_KEYS'),
    redisUrl: redisUrl ? read.url('REDIS_URL', redisUrl, ['redis:', 'rediss:']) : undefined,
    tracesExporter: exporter === 'none' ? undefined : exporter,
    routing: read.oneOf('ROUTING', ['cache-aware', 'least-request']),
    responsesSecrets: read.list('RESPONSES_SECRET'),
    responsesStore: read.oneOf('RESPONSES_STORE', ['on', 'off']) !== 'off',
    cacheIsolation: read.oneOf('CACHE_ISOLATION', ['key', 'team', 'none']),
    cacheSaltSecret: read.text('CACHE_SALT_SECRET'),
    aliases: parseAliases(read.text('MODEL_ALIASES')),
    maxNumSeqs: read.integer('MAX_NUM_SEQS', 1),
    passthrough,
    dnsRefreshMs: read.integer('DNS_REFRESH_MS', 100),
    resume: read.oneOf('RESUME', ['on', 'off']) !== 'off',
    logLevel: read.oneOf('LOG_LEVEL', LOG_LEVELS) ?? 'info',
    logFormat: read.oneOf('LOG_FORMAT', ['json', 'pretty']) ?? 'json',
  };
}
