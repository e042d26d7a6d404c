import { describe, expect, it } from 'vitest';
import { ReplicaBreaker, UpstreamFault } from '../src/index.js';

const fault = () => Promise.reject(new UpstreamFault('status', 'replica answered 500', 500));
const ok = () => Promise.resolve('ok');
import { sleep } from '../../../test/helpers/wait.js';

describe('ReplicaBreaker', () => {
  it('opens after consecutive upstream faults, half-opens after the reset timeout, a good probe closes it', async () => {
    const b = new ReplicaBreaker('r1', { consecutiveFailures: 3, resetTimeoutMs: 100 });
    const states: string[] = [];
    b.on('state', (_replica, s) => states.push(s));
    for (let i = 0; i < 3; i++) await b.run(fault).catch(() => undefined);
    expect(b.state).toBe('open');
    expect(b.allowsRequest()).toBe(false);
    await expect(b.run(ok)).rejects.toSatisfy((e) => ReplicaBreaker.isRejection(e));
    await sleep(150);
    expect(b.state).toBe('halfOpen');
    expect(b.allowsRequest()).toBe(true);
    const probe = b.run(() => sleep(20).then(ok));
    // One probe at a time.
    expect(b.allowsRequest()).toBe(false);
    await probe;
    expect(b.state).toBe('closed');
    expect(states).toEqual(['open', 'halfOpen', 'closed']);
    b.shutdown();
  });

  it('a failed probe opens it again', async () => {
    const b = new ReplicaBreaker('r2', { consecutiveFailures: 1, resetTimeoutMs: 50 });
    await b.run(fault).catch(() => undefined);
    await sleep(80);
    expect(b.state).toBe('halfOpen');
    await b.run(fault).catch(() => undefined);
    expect(b.state).toBe('open');
    b.shutdown();
  });

  it('opens on the error rate over the window once the volume is reached', async () => {
    const b = new ReplicaBreaker('r3', { consecutiveFailures: 100, volumeThreshold: 10, errorThresholdPercentage: 50 });
    for (let i = 0; i < 12; i++) await b.run(i % 3 === 0 ? ok : fault).catch(() => undefined);
    expect(b.state).toBe('open');
    b.shutdown();
  });

  it('errors that are not upstream faults (client gone, caller 4xx) never count', async () => {
    const b = new ReplicaBreaker('r4', { consecutiveFailures: 2 });
    for (let i = 0; i < 10; i++) await b.run(() => Promise.reject(new Error('client disconnected'))).catch(() => undefined);
    expect(b.state).toBe('closed');
    b.shutdown();
  });

  it('a fault found after the attempt resolved (mid-stream) counts too', async () => {
    const b = new ReplicaBreaker('r5', { consecutiveFailures: 2 });
    await b.run(ok);
    b.recordFailure(new UpstreamFault('reset', 'stream broke'));
    b.recordFailure(new UpstreamFault('reset', 'stream broke'));
    await sleep(0);
    expect(b.state).toBe('open');
    b.shutdown();
  });
});
