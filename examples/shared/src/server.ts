import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { FileKeyStore } from '@tera-gw/auth';
import { gatewayOptionsSchema, type GatewayOptions } from '@tera-gw/gateway';
import { RedisBudgetStore, RedisStore } from '@tera-gw/rate-limit-redis';
import { RedisResponseStore } from '@tera-gw/responses';
import { spawnSimulator, type SimulatorProcess } from '@tera-gw/vllm-sim';
import { Redis } from 'ioredis';
import { pino, type Logger, type LoggerOptions } from 'pino';
import { ConfigError, loadConfig, type ServerConfig } from './config.js';

/** What a server needs from its gateway, whichever framework mounts it. */
export interface Closable {
  close(): Promise<void>;
}

export interface Runtime {
  name: string;
  config: ServerConfig;
  logger: Logger;
  /** The gateway's options, replicas included (the simulators are running when there were no UPSTREAM_URLS). */
  options: GatewayOptions;
  /** The key printed for this run when there is no GATEWAY_KEYS file. */
  devKey: string | undefined;
  keyFile: FileKeyStore | undefined;
  /** Stops what `start()` started: simulators, Redis clients, the keys-file watch. */
  close(): Promise<void>;
}

/** The listening error as one sentence an operator can act on. */
function listenError(config: ServerConfig, err: NodeJS.ErrnoException): string {
  if (err.code === 'EADDRINUSE')
    return `PORT ${config.port} is already in use on ${config.host}: stop what holds it, or set PORT to a free port`;
  if (err.code === 'EACCES') return `PORT ${config.port} on ${config.host} needs privileges this process lacks: set PORT to 1024 or above`;
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') return `HOST ${config.host} is not an address of this machine`;
  return `cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`;
}

/** Binds the port and lets it go: a port in use is said before a simulator starts. */
function checkPort(config: ServerConfig): Promise<void> {
  if (config.port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(new ConfigError(listenError(config, err))));
    probe.listen(config.port, config.host, () => probe.close(() => resolve()));
  });
}

/** One line on stderr, no stack, exit code 1: what an operator reads when the server cannot start. */
function fatal(name: string, message: string): never {
  process.stderr.write(`${name}: ${message}\n`);
  process.exit(1);
}

/** JSON lines on stdout (pino), or colours for a terminal with LOG_FORMAT=pretty. */
function createLogger(config: ServerConfig): Logger {
  const options: LoggerOptions = {
    name: 'tera-gw',
    level: config.logLevel,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // The gateway never logs a key; anything that names one by these fields is hidden all the same.
    redact: ['authorization', '*.authorization', 'headers.authorization', 'apiKey', '*.apiKey'],
  };
  if (config.logFormat === 'pretty') return pino({ ...options, transport: { target: 'pino-pretty', options: { destination: 1 } } });
  // Written as each line is made: none lost when the process exits, none out of order.
  return pino(options, pino.destination({ dest: 1, sync: true }));
}

/** The gateway's options from the configuration; `replicas` and the stores are filled in once they exist. */
function gatewayOptions(config: ServerConfig, parts: Pick<GatewayOptions, 'replicas' | 'auth' | 'logger'> & Stores): GatewayOptions {
  return {
    replicas: parts.replicas,
    auth: parts.auth,
    logger: parts.logger,
    rateLimit: parts.store ? { store: parts.store } : {},
    budgets: parts.budgetStore ? { store: parts.budgetStore } : {},
    ...(config.aliases ? { models: { aliases: config.aliases } } : {}),
    ...(config.passthrough.length ? { passthrough: config.passthrough } : {}),
    admission: !config.admission ? false : config.fallback ? { overflow: { afterMs: config.overflowAfterMs } } : {},
    responses: {
      ...(!config.responsesStore ? { store: false as const } : parts.responseStore ? { store: parts.responseStore } : {}),
      ...(config.responsesSecrets.length ? { secrets: config.responsesSecrets } : {}),
    },
    upstream: {
      health: { intervalMs: 5000 },
      ...(config.routing ? { routing: config.routing } : {}),
      ...(config.cacheIsolation ? { cacheIsolation: config.cacheIsolation } : {}),
      ...(config.cacheSaltSecret ? { cacheSaltSecret: config.cacheSaltSecret } : {}),
      ...(config.maxNumSeqs ? { maxNumSeqs: config.maxNumSeqs } : {}),
      ...(config.dnsRefreshMs ? { dnsRefreshMs: config.dnsRefreshMs } : {}),
      ...(config.resume ? {} : { resume: false as const }),
      ...(config.fallback ? { fallback: config.fallback } : {}),
    },
  };
}

interface Stores {
  store?: RedisStore;
  budgetStore?: RedisBudgetStore;
  responseStore?: RedisResponseStore;
}

/** The keys: the GATEWAY_KEYS file, watched, or one operator key for this run. */
function keysOf(config: ServerConfig, logger: Logger): { auth: GatewayOptions['auth']; keyFile?: FileKeyStore; devKey?: string } {
  if (config.keysFile) {
    const keyFile = new FileKeyStore(config.keysFile, { label: 'GATEWAY_KEYS', logger: logger.child({ component: 'keys' }) });
    return { auth: { keyStore: keyFile }, keyFile };
  }
  const devKey = `sk-tera-dev-${randomBytes(18).toString('base64url')}`;
  // The development key is the operator's: it also reads replica details on /health and /metrics.
  return { auth: { keys: [{ key: devKey, id: 'dev', models: '*', concurrency: 16, tokensPerSecond: 20_000, operator: true }] }, devKey };
}

/**
 * Reads and checks the whole configuration (environment, keys file, the gateway's options), then
 * starts what it names: simulators when there are no UPSTREAM_URLS, Redis clients. A mistake ends
 * the process with one line naming the variable, before anything was started.
 */
export async function start(name: string, defaultPort: number): Promise<Runtime> {
  let config: ServerConfig;
  let logger: Logger;
  let keys: ReturnType<typeof keysOf>;
  try {
    config = loadConfig(process.env, defaultPort);
    logger = createLogger(config);
    keys = keysOf(config, logger);
    // The simulators' URLs are not known yet: a stand-in lets every other option be checked first.
    const checked = gatewayOptionsSchema.safeParse(
      gatewayOptions(config, { replicas: config.upstreamUrls ?? ['http://127.0.0.1:1'], auth: keys.auth, logger }),
    );
    if (!checked.success) throw new ConfigError(checked.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    await checkPort(config);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof TypeError) fatal(name, err.message);
    throw err;
  }
  const sims: SimulatorProcess[] = [];
  let replicas = config.upstreamUrls;
  if (!replicas) {
    // Processes of their own: a prompt they count or a stream they pace never holds the gateway's event loop.
    const pacing = ['--ttft-ms', String(config.simulator.ttftMs), '--itl-ms', String(config.simulator.itlMs)];
    sims.push(...(await Promise.all([spawnSimulator(pacing), spawnSimulator(pacing)])));
    replicas = sims.map((s) => s.url);
    logger.info({ replicas }, 'no UPSTREAM_URLS: started two embedded vllm-sim replicas');
  }
  const redisLogger = logger.child({ component: 'redis' });
  const redisUrl = config.redisUrl;
  const responsesRedis = redisUrl ? new Redis(redisUrl, { maxRetriesPerRequest: 1 }) : undefined;
  responsesRedis?.on('error', () => undefined);
  const stores: Stores = redisUrl
    ? {
        store: new RedisStore({ url: redisUrl, logger: redisLogger }),
        // Keys with a `budget` spend it here: one budget across every host on the same Redis.
        budgetStore: new RedisBudgetStore({ url: redisUrl, logger: redisLogger }),
        responseStore: new RedisResponseStore({ client: responsesRedis! }),
      }
    : {};
  if (!config.responsesSecrets.length && config.upstreamUrls)
    logger.warn('RESPONSES_SECRET is unset: sealed reasoning opens only on this process until it restarts');
  return {
    name,
    config,
    logger,
    options: gatewayOptions(config, { replicas, auth: keys.auth, logger, ...stores }),
    devKey: keys.devKey,
    keyFile: keys.keyFile,
    async close() {
      keys.keyFile?.close();
      await stores.store?.close();
      await stores.budgetStore?.close();
      responsesRedis?.disconnect();
      await Promise.all(sims.map((s) => s.close()));
    },
  };
}

/** What a new user can paste: the development key, a curl line, the Codex CLI line (on stderr: stdout is for log lines). */
function printHints(url: string, devKey: string | undefined): void {
  const key = devKey ?? '<one of your GATEWAY_KEYS>';
  const lines = [
    ...(devKey ? [`development API key (this run only): ${devKey}`] : []),
    `try: curl -s ${url}/v1/chat/completions -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json' -d '{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"What is the weather in Paris?"}]}'`,
    `Codex CLI (any directory): TERA_API_KEY=${key} codex exec --skip-git-repo-check -m openai/gpt-oss-20b -c model_provider=tera -c 'model_providers.tera.name="tera"' -c 'model_providers.tera.base_url="${url}/v1"' -c 'model_providers.tera.env_key="TERA_API_KEY"' -c 'model_providers.tera.wire_api="responses"' "List the files here"`,
    `the demo client: TERA_API_KEY=${key} GATEWAY_URL=${url}/v1 pnpm demo`,
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
}

/**
 * Listens, says so, and runs the process's signals: SIGHUP re-reads the keys file; SIGINT and
 * SIGTERM drain (the probes answer 503 while streams in flight finish), then stop. A port in use
 * or refused is one line and exit code 1.
 */
export function serve(runtime: Runtime, server: Server, gateway: Closable): void {
  const { config, logger } = runtime;
  server.once('error', (err: NodeJS.ErrnoException) => {
    void runtime.close().finally(() => fatal(runtime.name, listenError(config, err)));
  });
  server.listen(config.port, config.host, () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    logger.info({ url }, 'gateway listening');
    printHints(url, runtime.devKey);
  });
  process.on('SIGHUP', () => {
    if (runtime.keyFile) runtime.keyFile.reload();
    else logger.info('SIGHUP: there is no GATEWAY_KEYS file to read again');
  });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Still listening while draining: the probes say 503 and a load balancer moves traffic away.
    await gateway.close();
    server.close();
    server.closeAllConnections();
    await runtime.close();
    logger.flush();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}
