import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageRecord } from '@tera-gw/telemetry';
import { mountGateway, type Mounted } from '../helpers/mount.js';
import { freePort, spawnSim, type SimProcess } from '../helpers/processes.js';
import { until } from '../helpers/wait.js';

/**
 * A replica entry may be a DNS name (a Kubernetes headless Service): every address it resolves to
 * is a replica, re-resolved while the gateway runs. Two simulators on one port at two loopback
 * addresses stand for two pods; the resolver is the test's, so the answer can change.
 */
const model = 'openai/gpt-oss-20b';
const key = 'sk-tera-replicas-key-1';
let port: number;
const sims: SimProcess[] = [];
let addresses: string[] = ['127.0.0.2', '127.0.0.3'];
let gw: Mounted;
const usage: UsageRecord[] = [];
const events: string[] = [];

beforeAll(async () => {
  port = await freePort();
  // Slow enough that a stream is still running when its replica leaves the set.
  for (const host of ['127.0.0.2', '127.0.0.3']) sims.push(await spawnSim(['--host', host, '--ttft-ms', '5', '--itl-ms', '15'], port));
  gw = await mountGateway('express', {
    replicas: [`http://pods.tera.test:${port}`],
    auth: { keys: [{ key, id: 'replicas', concurrency: 32 }] },
    upstream: { resolve: () => Promise.resolve(addresses), dnsRefreshMs: 100, health: { intervalMs: 200 } },
    onUsage: (record) => usage.push(record),
  });
  const upstream = gw.gateway.upstream;
  upstream.events.on('replicaAdded', (r) => events.push(`added ${r}`));
  upstream.events.on('replicaRemoved', (r) => events.push(`removed ${r}`));
  upstream.events.on('replicaState', (r, state) => events.push(`${state} ${r}`));
  await gw.gateway.ready(10_000);
});
afterAll(async () => {
  await gw?.close();
  await Promise.all(sims.map((s) => s.kill()));
});

const ask = (max_tokens = 8) =>
  gw.client(key).chat.completions.create({ model, messages: [{ role: 'user', content: `hello ${Math.random()}` }], max_tokens });

describe('replicas behind a DNS name', () => {
  const a = () => `http://127.0.0.2:${port}`;
  const b = () => `http://127.0.0.3:${port}`;

  it('every address the name resolves to is a replica, and both take requests', async () => {
    await until(() => gw.gateway.upstream.replicas().filter((r) => r.state === 'ready').length === 2, 10_000, 'both addresses ready');
    expect(
      gw.gateway.upstream
        .replicas()
        .map((r) => r.url)
        .sort(),
    ).toEqual([a(), b()]);
    usage.length = 0;
    await Promise.all(Array.from({ length: 12 }, () => ask()));
    expect(new Set(usage.map((u) => u.replica))).toEqual(new Set([a(), b()]));
  });

  it('an address that leaves drains: its stream in flight finishes, new requests go elsewhere, then it is gone', async () => {
    const stream = await gw
      .client(key)
      .chat.completions.create({ model, messages: [{ role: 'user', content: 'a long one' }], max_tokens: 150, stream: true });
    const chunks: string[] = [];
    let finish: string | null | undefined;
    const reading = (async () => {
      for await (const chunk of stream) {
        chunks.push(chunk.choices[0]?.delta?.content ?? '');
        finish ??= chunk.choices[0]?.finish_reason;
      }
    })();
    // Which replica took it: the one with a request in flight.
    await until(() => gw.gateway.upstream.replicas().some((r) => r.inFlight > 0), 5000, 'the stream to start');
    const busy = gw.gateway.upstream.replicas().find((r) => r.inFlight > 0)!.url;
    const stays = busy === a() ? b() : a();
    addresses = [new URL(stays).hostname];
    await until(() => gw.gateway.upstream.replicas().find((r) => r.url === busy)?.state === 'draining', 5000, 'the replica to drain');
    usage.length = 0;
    await Promise.all(Array.from({ length: 6 }, () => ask()));
    expect(usage.map((u) => u.replica)).toEqual(Array(6).fill(stays));
    await reading;
    // Finished as the model finished it, not cut: a finish reason, and text.
    expect(['stop', 'length']).toContain(finish);
    expect(chunks.join('').length).toBeGreaterThan(0);
    await until(() => events.includes(`removed ${busy}`), 5000, 'the drained replica to be removed');
    expect(gw.gateway.upstream.replicas().map((r) => r.url)).toEqual([stays]);
  });

  it('an address that comes back joins after its warm-up', async () => {
    addresses = ['127.0.0.2', '127.0.0.3'];
    await until(() => gw.gateway.upstream.replicas().filter((r) => r.state === 'ready').length === 2, 10_000, 'the address to rejoin');
    usage.length = 0;
    await Promise.all(Array.from({ length: 12 }, () => ask()));
    expect(new Set(usage.map((u) => u.replica)).size).toBe(2);
  });

  it('setReplicas() replaces the set at run time: the name drains, the given address joins', async () => {
    await gw.gateway.upstream.setReplicas([a()]);
    expect(
      gw.gateway.upstream
        .replicas()
        .filter((r) => r.state !== 'draining')
        .map((r) => r.url),
    ).toEqual([a()]);
    await until(
      () => gw.gateway.upstream.replicas().length === 1 && gw.gateway.upstream.replicas()[0]!.state === 'ready',
      10_000,
      'one ready replica',
    );
    usage.length = 0;
    await Promise.all(Array.from({ length: 4 }, () => ask()));
    expect(usage.map((u) => u.replica)).toEqual(Array(4).fill(a()));
  });

  it("'localhost' is resolved by the system: its loopback address serves", async () => {
    const sim = await spawnSim(['--ttft-ms', '5', '--itl-ms', '1']);
    const local = await mountGateway('express', {
      replicas: [`http://localhost:${sim.port}`],
      auth: { keys: [{ key, id: 'local' }] },
      // localhost may also resolve to ::1, where the simulator does not listen: that replica stays out.
      upstream: { health: { intervalMs: 200 } },
    });
    try {
      await local.gateway.ready(10_000);
      expect(local.gateway.upstream.replicas().map((r) => r.url)).toContain(`http://127.0.0.1:${sim.port}`);
      const answer = await local.client(key).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
      expect(answer.choices[0]!.finish_reason).toBe('length');
    } finally {
      await local.close();
      await sim.kill();
    }
  });
});
