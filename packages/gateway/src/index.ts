export { createGateway, createGatewayHandler, type Gateway, type GatewayHandle, type GatewayOptions } from './gateway.js';
export { gatewayOptionsSchema } from './options.js';
// What the host app puts around the gateway so that nothing it answers is HTML: its last handler, its error handler, its server's clientError listener.
export { clientErrorHandler, errorHandler, fallbackHandler } from '@tera-gw/core';
