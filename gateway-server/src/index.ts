export { startGateway, type RunningGateway } from './server.js';
export { resolveConfig, loadConfigFile, type ResolvedConfig } from './config.js';
export { buildApp } from './app.js';
