export { createGateway, createGatewayHandler, type Gateway, type GatewayHandle, type GatewayOptions } from './gateway.js';
export { gatewayOptionsSchema } from './options.js';
