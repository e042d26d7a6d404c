/**
 * The upstream pool as the stages that share it see it: `@tera-gw/vllm`'s adapter provides it
 * (`adapter.pool`), `@tera-gw/admission` reads it. Room is counted in requests the replicas would
 * start at once, not queue in their own FIFO.
 */
export interface UpstreamPool {
  /** Requests the pool can start now; `Infinity` when it has no capacity signal (then nothing is held). */
  room(): number;
  /** No replica can take a request at all (each down, warming or with its breaker open). */
  down(): boolean;
  /** Holds one unit of room for a request admitted now, until the upstream counts it in flight or it ends. */
  reserve(): { settle(): void };
  /** Calls `listener` whenever room may have grown (a request ended, a replica came back, a scrape). Returns the unsubscribe. */
  onChange(listener: () => void): () => void;
}

/**
 * A request's place in the upstream pool: set by admission, used by the upstream. The handshake
 * of the pool contract, so neither stage reaches into the other.
 */
export interface PoolTicket {
  /**
   * Room held for the request from its admission until the upstream counts it in flight on a
   * replica (or it ends): settled by whichever comes first.
   */
  reservation?: { settle(): void };
  /**
   * Waits for the pool's room again before a retried attempt (a retry is more work for the pool,
   * so it takes its turn like a new request). Rejects with the error to answer.
   */
  readmit?: () => Promise<void>;
  /** The pool is full: the upstream sends this request to its overflow provider. */
  overflow?: boolean;
  /** Milliseconds the request waited in the admission queue (0 when it went straight through). */
  queueMs?: number;
}
