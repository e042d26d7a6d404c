import type { UpstreamPool } from '@tera-gw/core';
import type { Replica } from './replica.js';

/**
 * Room in the pool, for `@tera-gw/admission`: each available replica's capacity (configured or
 * learned from `/metrics`) minus what runs there, less what admission holds for requests admitted
 * but not yet in flight (their costly checks run first). `changed()` tells listeners room may have grown.
 */
export function createPool(replicas: () => readonly Replica[]): UpstreamPool & { changed: () => void; clear: () => void } {
  const listeners = new Set<() => void>();
  let reserved = 0;
  const changed = () => {
    for (const listener of listeners) listener();
  };
  return {
    room() {
      let room = 0;
      let anyAvailable = false;
      const all = replicas();
      for (const r of all) {
        if (!r.available) continue;
        anyAvailable = true;
        // Summed, not floored per replica: one over its capacity (affinity kept a conversation there) takes room from the pool.
        const capacity = r.capacity;
        if (capacity === undefined) room = Infinity;
        else if (r.room === 0 && r.inFlight < capacity) continue;
        else room += capacity - r.inFlight;
      }
      // No replica up: full if a capacity was ever known (then requests wait for one to return), else nothing is held.
      if (!anyAvailable) return all.some((r) => r.capacity !== undefined) ? 0 : Infinity;
      return room - reserved;
    },
    down: () => !replicas().some((r) => r.available),
    reserve() {
      reserved++;
      let settled = false;
      return {
        settle() {
          if (settled) return;
          settled = true;
          reserved--;
          changed();
        },
      };
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    changed,
    clear: () => listeners.clear(),
  };
}
