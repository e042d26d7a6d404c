import { describe, expect, it } from 'vitest';
import { FlowScheduler, type Queued } from '../src/index.js';

const add = (s: FlowScheduler<string>, value: string, fairnessId: string, priority = 0, cost = 1, bytes = 10) =>
  s.enqueue(value, { fairnessId, priority, bytes, cost, at: 0 });

const drain = (s: FlowScheduler<string>): string[] => {
  const out: string[] = [];
  for (let q = s.pop(); q; q = s.pop()) out.push(q.value);
  return out;
};

describe('FlowScheduler', () => {
  it('serves higher bands first, flows of a band in turn, and each flow in arrival order', () => {
    const s = new FlowScheduler<string>();
    for (const v of ['a1', 'a2', 'a3', 'a4']) add(s, v, 'a');
    for (const v of ['b1', 'b2']) add(s, v, 'b');
    add(s, 'low1', 'a', -1);
    add(s, 'c1', 'c');
    add(s, 'high1', 'z', 7);
    expect(drain(s)).toEqual(['high1', 'a1', 'b1', 'c1', 'a2', 'b2', 'a3', 'a4', 'low1']);
    expect(s.size).toBe(0);
    expect(s.bytes).toBe(0);
  });

  it('a flow that joins waits behind the flows already taking turns', () => {
    const s = new FlowScheduler<string>();
    add(s, 'a1', 'a');
    add(s, 'a2', 'a');
    add(s, 'b1', 'b');
    expect(s.pop()!.value).toBe('a1');
    add(s, 'c1', 'c');
    expect(drain(s)).toEqual(['b1', 'a2', 'c1']);
  });

  it('by tokens, a flow of long requests gets as many tokens as a flow of short ones, not as many requests', () => {
    const s = new FlowScheduler<string>({}, 1000);
    for (let i = 0; i < 20; i++) add(s, `long${i}`, 'long', 0, 1000);
    for (let i = 0; i < 100; i++) add(s, `short${i}`, 'short', 0, 100);
    const first = Array.from({ length: 44 }, () => s.pop()!.value);
    const long = first.filter((v) => v.startsWith('long')).length;
    const short = first.filter((v) => v.startsWith('short')).length;
    expect(long).toBe(4);
    expect(short).toBe(40);
  });

  it('removes a request from anywhere in its flow, and an emptied flow leaves the turn order', () => {
    const s = new FlowScheduler<string>();
    const a1 = add(s, 'a1', 'a') as Queued<string>;
    const a2 = add(s, 'a2', 'a') as Queued<string>;
    add(s, 'a3', 'a');
    const b1 = add(s, 'b1', 'b') as Queued<string>;
    add(s, 'c1', 'c');
    expect(s.remove(a2)).toBe(true);
    expect(s.remove(a2)).toBe(false);
    expect(s.remove(b1)).toBe(true);
    expect(s.remove(a1)).toBe(true);
    expect(s.size).toBe(2);
    expect(drain(s)).toEqual(['a3', 'c1']);
    expect(a1.queued).toBe(false);
  });

  it('refuses past the caps per flow and in all, by count and by bytes', () => {
    const s = new FlowScheduler<string>({ maxQueued: 3, maxQueuedPerFlow: 2, maxQueuedBytes: 1000, maxQueuedBytesPerFlow: 500 });
    expect(typeof add(s, 'a1', 'a')).toBe('object');
    expect(typeof add(s, 'a2', 'a')).toBe('object');
    expect(add(s, 'a3', 'a')).toBe('flow_full');
    expect(add(s, 'big', 'b', 0, 1, 600)).toBe('flow_full');
    expect(typeof add(s, 'b1', 'b', 0, 1, 400)).toBe('object');
    expect(add(s, 'c1', 'c')).toBe('queue_full');
    s.pop();
    expect(add(s, 'c2', 'c', 0, 1, 700)).toBe('queue_full');
    expect(typeof add(s, 'c3', 'c')).toBe('object');
  });

  it('reports depth by band, and stays bounded after many flows came and went', () => {
    const s = new FlowScheduler<string>();
    for (let i = 0; i < 10_000; i++) {
      const q = add(s, `v${i}`, `flow-${i}`, i % 2) as Queued<string>;
      if (i % 3 === 0) s.remove(q);
      else s.pop();
    }
    expect(s.size).toBe(0);
    add(s, 'x', 'x', 2);
    add(s, 'y', 'y', 2);
    add(s, 'z', 'z', 0);
    expect(s.depths()).toEqual([
      { priority: 2, queued: 2, flows: 2 },
      { priority: 0, queued: 1, flows: 1 },
    ]);
    expect(s.ahead(0)).toBe(3);
    expect(s.ahead(2)).toBe(2);
  });
});
