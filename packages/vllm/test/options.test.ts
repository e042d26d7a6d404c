import { describe, expect, it } from 'vitest';
import { vllm } from '../src/index.js';

describe('vllm options', () => {
  it('a wrong option throws naming it', () => {
    expect(() => vllm({ replicas: [] })).toThrow(/vllm\(\): option 'replicas': give at least one vLLM base URL/);
    expect(() => vllm({ replicas: ['ftp://x'] })).toThrow(/option 'replicas\[0\]'/);
    expect(() => vllm({ replicas: ['http://127.0.0.1:1'], timeouts: { idleMs: 0 } })).toThrow(/option 'timeouts.idleMs'/);
    expect(() => vllm({ replicas: ['http://127.0.0.1:1'], breaker: { resetTimeoutMs: -5 } })).toThrow(/option 'breaker.resetTimeoutMs'/);
    expect(() => vllm({ replicas: ['http://127.0.0.1:1'], router: {} as never })).toThrow(/option 'router': must be a Router/);
    expect(() => vllm({ replicas: ['http://127.0.0.1:1'], retry: 3 } as never)).toThrow(/unknown option 'retry'/);
    vllm({ replicas: ['http://127.0.0.1:1'], health: false }).close();
  });
});
