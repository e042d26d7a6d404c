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
