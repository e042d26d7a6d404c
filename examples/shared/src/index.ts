export { ConfigError, loadConfig, type ServerConfig } from './config.js';
export { serve, start, type Closable, type Runtime } from './server.js';
