export { koaGateway, toKoa, type KoaGateway } from './koa.js';
// The server's clientError listener, so that oversized headers get a JSON 431 under Koa too.
export { clientErrorHandler } from '@tera-gw/core';
