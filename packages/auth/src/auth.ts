import type { IncomingMessage } from 'node:http';
import { authenticationError, context, parseOptions, permissionError, type AuthenticatedKey, type Middleware } from '@tera-gw/core';
import { authOptionsSchema, type AuthOptions } from './options.js';
import { hashKey, type KeyRecord, type KeyStore } from './keys.js';

// A bearer token: printable ASCII without spaces, as RFC 6750's b64token and OpenAI's keys are.
const TOKEN = /^[\x21-\x7e]{8,512}$/;

const missing = () =>
  authenticationError(
    "You didn't provide an API key. Provide it in the Authorization header as 'Authorization: Bearer YOUR_KEY'.",
    'missing_api_key',
  );

/**
 * The record of the request's bearer key: rejects with a 401 TeraError when the key is
 * missing, malformed, unknown, expired or disabled. The key never appears in an error.
 */
export async function verifyBearer(req: IncomingMessage, keyStore: KeyStore, now: () => number = Date.now): Promise<KeyRecord> {
  const header = req.headers.authorization;
  if (!header) throw missing();
  const space = header.indexOf(' ');
  if (space === -1 || header.slice(0, space).toLowerCase() !== 'bearer') {
    throw authenticationError(
      "The Authorization header must use the Bearer scheme: 'Authorization: Bearer YOUR_KEY'.",
      'invalid_authorization_header',
    );
  }
  const key = header.slice(space + 1).trim();
  if (!TOKEN.test(key)) throw authenticationError('The API key provided is malformed.', 'invalid_api_key');
  const record = await keyStore.lookup(hashKey(key));
  if (!record) throw authenticationError('Incorrect API key provided.', 'invalid_api_key');
  if (record.disabled) throw authenticationError('This API key has been disabled.', 'api_key_disabled');
  if (record.expiresAt && record.expiresAt.getTime() <= now()) throw authenticationError('This API key has expired.', 'api_key_expired');
  return record;
}

/**
 * `Authorization: Bearer <key>` against a KeyStore: missing, malformed, unknown, expired or
 * disabled -> 401 `authentication_error` with `WWW-Authenticate: Bearer`. The key never
 * appears in an error; the authenticated record goes on the context.
 */
export function auth(input: AuthOptions): Middleware {
  const { keyStore, now } = parseOptions(authOptionsSchema, input, 'auth()');
  return function authenticate(req, res, next) {
    verifyBearer(req, keyStore, now).then((record) => {
      const key: { -readonly [K in keyof AuthenticatedKey]: AuthenticatedKey[K] } = { id: record.id, models: record.models };
      if (record.limits) key.limits = record.limits;
      if (record.team !== undefined) key.team = record.team;
      if (record.budget !== undefined) key.budget = record.budget;
      if (record.priority !== undefined) key.priority = record.priority;
      if (record.fairnessFromHeader) key.fairnessFromHeader = true;
      context(req, res).key = key;
      next();
    }, next);
  };
}

/** After validation: a key not scoped to the requested model -> 403 `permission_error`. */
export function scope(): Middleware {
  return function checkScope(req, res, next) {
    const ctx = context(req, res);
    const models = ctx.key?.models;
    const model = ctx.body?.model;
    // An alias is allowed when the key lists it or the model it names.
    const asked = ctx.requestedModel;
    if (!models || models === '*' || !model || models.includes(model) || (asked !== undefined && models.includes(asked))) return next();
    next(permissionError(`This API key is not allowed to use the model '${asked ?? model}'.`));
  };
}
