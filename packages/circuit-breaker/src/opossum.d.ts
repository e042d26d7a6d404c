declare module 'opossum' {
  import { EventEmitter } from 'node:events';
  interface Options {
    timeout?: number | false;
    resetTimeout?: number;
    errorThresholdPercentage?: number;
    rollingCountTimeout?: number;
    rollingCountBuckets?: number;
    volumeThreshold?: number;
    name?: string;
    errorFilter?: (err: unknown) => boolean;
  }
  class CircuitBreaker<A extends unknown[] = unknown[], R = unknown> extends EventEmitter {
    constructor(action: (...args: A) => Promise<R>, options?: Options);
    fire(...args: A): Promise<R>;
    open(): void;
    close(): void;
    shutdown(): void;
    readonly opened: boolean;
    readonly closed: boolean;
    readonly halfOpen: boolean;
    readonly pendingClose: boolean;
    readonly stats: { fires: number; failures: number; successes: number; rejects: number };
    static isOurError(error: unknown): boolean;
  }
  export default CircuitBreaker;
}
