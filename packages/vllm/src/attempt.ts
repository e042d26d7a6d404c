import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { UpstreamFault } from '@tera-gw/circuit-breaker';
import type { Replica } from './replica.js';
import type { Timeouts } from './options.js';

export type { Timeouts } from './options.js';

/** The client went away: nothing to answer, nothing for the breaker to count. */
export class ClientGone extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientGone';
  }
}

export interface Attempt {
  response: IncomingMessage;
  request: ClientRequest;
}

function classify(err: NodeJS.ErrnoException, connected: boolean): UpstreamFault {
  if (err instanceof UpstreamFault) return err;
  if (!connected || err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENOTFOUND') {
    return new UpstreamFault('connect', `could not connect: ${err.code ?? err.message}`);
  }
  return new UpstreamFault('reset', `connection reset before the response: ${err.code ?? err.message}`);
}

/**
 * Sends one request to a replica and resolves with the response once its headers arrive.
 * Rejects with an UpstreamFault (connect error, reset, timeout before the first byte) or
 * ClientGone; a reset on a reused keep-alive socket the server had closed is marked `staleSocket`.
 */
export function sendAttempt(
  replica: Replica,
  payload: Buffer,
  headers: Record<string, string>,
  timeouts: Timeouts,
  signal: AbortSignal,
  path = '/v1/chat/completions',
): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ClientGone());
    const send = replica.secure ? httpsRequest : request;
    let connected = false;
    let settled = false;
    const req = send({
      agent: replica.agent,
      hostname: replica.connectHost,
      port: replica.url.port,
      path: `${replica.basePath}${path}`,
      method: 'POST',
      headers: replica.hostHeader
        ? { ...headers, host: replica.hostHeader, 'content-length': payload.length }
        : { ...headers, 'content-length': payload.length },
    });
    const onAbort = () => {
      req.destroy();
      finish(new ClientGone());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const firstByte = setTimeout(
      () => req.destroy(new UpstreamFault('timeout', `no response headers within ${timeouts.firstByteMs} ms`)),
      timeouts.firstByteMs,
    );
    let connectTimer: NodeJS.Timeout | undefined;
    function finish(err: Error | undefined, response?: IncomingMessage) {
      if (settled) return;
      settled = true;
      clearTimeout(firstByte);
      clearTimeout(connectTimer);
      signal.removeEventListener('abort', onAbort);
      if (err) {
        if (err instanceof UpstreamFault) err.staleSocket = req.reusedSocket && err.kind === 'reset';
        reject(err);
      } else {
        resolve({ response: response!, request: req });
      }
    }
    req.once('socket', (socket) => {
      if (!socket.connecting) {
        connected = true;
        return;
      }
      connectTimer = setTimeout(
        () => req.destroy(new UpstreamFault('connect', `connect timed out after ${timeouts.connectMs} ms`)),
        timeouts.connectMs,
      );
      socket.once('connect', () => {
        connected = true;
        clearTimeout(connectTimer);
      });
    });
    req.once('response', (response) => finish(undefined, response));
    req.on('error', (err: NodeJS.ErrnoException) => finish(signal.aborted ? new ClientGone() : classify(err, connected)));
    req.end(payload);
  });
}

/** Reads a whole response body with the idle and total limits; rejects with an UpstreamFault. */
export function readResponse(response: IncomingMessage, idleMs: number, deadline: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let idle: NodeJS.Timeout | undefined;
    const total = setTimeout(
      () => response.destroy(new UpstreamFault('timeout', 'the response did not finish in time')),
      Math.max(0, deadline - performance.now()),
    );
    const arm = () => {
      if (idle) idle.refresh();
      else idle = setTimeout(() => response.destroy(new UpstreamFault('timeout', `no data for ${idleMs} ms`)), idleMs);
    };
    const onAbort = () => response.destroy(new ClientGone());
    signal.addEventListener('abort', onAbort, { once: true });
    const done = (err?: Error) => {
      clearTimeout(idle);
      clearTimeout(total);
      signal.removeEventListener('abort', onAbort);
      if (err)
        reject(
          err instanceof UpstreamFault || err instanceof ClientGone
            ? err
            : new UpstreamFault('reset', `the response broke off: ${err.message}`),
        );
      else resolve(Buffer.concat(parts));
    };
    arm();
    response.on('data', (d: Buffer) => {
      parts.push(d);
      arm();
    });
    response.once('end', () => done());
    response.once('error', done);
    response.once('aborted', () => done(new UpstreamFault('reset', 'the response broke off')));
  });
}
