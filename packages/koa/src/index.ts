export { koaGateway, toKoa, type KoaGateway } from './koa.js';
