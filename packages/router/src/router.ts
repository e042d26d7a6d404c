/** What the router sees of a replica: nothing it would have to fetch itself. */
export interface ReplicaView {
  readonly id: string;
  /** Requests this gateway has in flight to the replica. */
  readonly inFlight: number;
}

/** What the router may look at in a request. */
export interface RouteRequest {
  readonly promptCacheKey?: string | undefined;
}

export interface Router {
  /** Picks among `candidates` (already filtered to warm, healthy, breaker-allowed replicas); undefined when empty. */
  pick<R extends ReplicaView>(request: RouteRequest, candidates: readonly R[]): R | undefined;
}

export interface RouterOptions {
  /** @defaultValue `'least-request'` */
  strategy?: 'least-request';
  /** Source of randomness for tie-breaks. @defaultValue `Math.random` */
  random?: () => number;
}

/** The candidate with the fewest requests in flight; ties broken at random so equal replicas share load. */
export function leastRequest<R extends ReplicaView>(candidates: readonly R[], random: () => number = Math.random): R | undefined {
  let best: R | undefined;
  let ties = 0;
  for (const c of candidates) {
    if (!best || c.inFlight < best.inFlight) {
      best = c;
      ties = 1;
    } else if (c.inFlight === best.inFlight) {
      // Reservoir sampling over the tied candidates: each is chosen with equal chance.
      ties++;
      if (random() * ties < 1) best = c;
    }
  }
  return best;
}

export function createRouter(options: RouterOptions = {}): Router {
  const random = options.random ?? Math.random;
  return {
    pick: (_request, candidates) => leastRequest(candidates, random),
  };
}
