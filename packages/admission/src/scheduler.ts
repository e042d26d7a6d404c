/**
 * The pure scheduling core: per-flow FIFO queues grouped in priority bands. Higher bands go first;
 * within a band, flows take turns by deficit round-robin (cost 1 per request is plain round-robin);
 * within a flow, first come first served. No timers, no I/O: the caller decides when to pop.
 */

export interface QueueLimits {
  /** Requests queued in all. @defaultValue 1000 */
  maxQueued: number;
  /** Request bytes queued in all. @defaultValue 64 MiB */
  maxQueuedBytes: number;
  /** Requests queued by one flow. @defaultValue 256 */
  maxQueuedPerFlow: number;
  /** Request bytes queued by one flow. @defaultValue 16 MiB */
  maxQueuedBytesPerFlow: number;
}

export const DEFAULT_QUEUE_LIMITS: QueueLimits = {
  maxQueued: 1000,
  maxQueuedBytes: 64 * 1024 * 1024,
  maxQueuedPerFlow: 256,
  maxQueuedBytesPerFlow: 16 * 1024 * 1024,
};

export interface EnqueueInput {
  /** Who the request is for: a flow is (fairnessId, priority). */
  fairnessId: string;
  priority: number;
  /** Counted against the byte caps. */
  bytes: number;
  /** What a turn spends: 1 for round-robin by requests, estimated tokens for fairness by tokens. */
  cost: number;
  /** When it was queued (any monotonic clock), kept for the caller. */
  at: number;
}

export interface Queued<T> extends Readonly<EnqueueInput> {
  readonly value: T;
  /** False once popped or removed. */
  readonly queued: boolean;
}

/** Why a request could not be queued. */
export type Refusal = 'flow_full' | 'queue_full';

interface Entry<T> extends EnqueueInput {
  value: T;
  queued: boolean;
  flow: Flow<T>;
}

interface Flow<T> {
  readonly id: string;
  readonly band: Band<T>;
  readonly items: Array<Entry<T> | undefined>;
  head: number;
  live: number;
  bytes: number;
  deficit: number;
  active: boolean;
}

interface Band<T> {
  readonly priority: number;
  readonly flows: Map<string, Flow<T>>;
  /** Flows with queued requests, in turn order. */
  readonly ring: Flow<T>[];
  /** Index in `ring` of the flow whose turn it is. */
  turn: number;
  /** The flow at `turn` has been given this turn's quantum. */
  credited: boolean;
  live: number;
}

export interface BandDepth {
  priority: number;
  queued: number;
  flows: number;
}

export class FlowScheduler<T> {
  private readonly limits: QueueLimits;
  /** Bands by priority, highest first. */
  private readonly bands: Band<T>[] = [];
  private live = 0;
  private liveBytes = 0;

  /** `quantum`: what a flow may spend per turn; with cost 1 per request, 1 makes it round-robin. */
  constructor(
    limits: Partial<QueueLimits> = {},
    private readonly quantum = 1,
  ) {
    this.limits = { ...DEFAULT_QUEUE_LIMITS, ...limits };
  }

  get size(): number {
    return this.live;
  }

  get bytes(): number {
    return this.liveBytes;
  }

  /** Queues a request at the tail of its flow, or says which cap refused it. */
  enqueue(value: T, input: EnqueueInput): Queued<T> | Refusal {
    if (this.live >= this.limits.maxQueued || this.liveBytes + input.bytes > this.limits.maxQueuedBytes) return 'queue_full';
    const band = this.band(input.priority);
    let flow = band.flows.get(input.fairnessId);
    if (flow && (flow.live >= this.limits.maxQueuedPerFlow || flow.bytes + input.bytes > this.limits.maxQueuedBytesPerFlow))
      return 'flow_full';
    if (!flow && input.bytes > this.limits.maxQueuedBytesPerFlow) return 'flow_full';
    if (!flow) {
      flow = { id: input.fairnessId, band, items: [], head: 0, live: 0, bytes: 0, deficit: 0, active: false };
      band.flows.set(flow.id, flow);
    }
    const entry: Entry<T> = {
      fairnessId: input.fairnessId,
      priority: input.priority,
      bytes: input.bytes,
      cost: Math.max(1, input.cost),
      at: input.at,
      value,
      queued: true,
      flow,
    };
    flow.items.push(entry);
    flow.live++;
    flow.bytes += input.bytes;
    band.live++;
    this.live++;
    this.liveBytes += input.bytes;
    if (!flow.active) {
      flow.active = true;
      // A flow that (re)joins waits for its turn behind the flows already waiting.
      if (band.ring.length === 0) {
        band.ring.push(flow);
        band.turn = 0;
        band.credited = false;
      } else {
        band.ring.splice(band.turn, 0, flow);
        band.turn++;
      }
    }
    return entry;
  }

  /** Takes a request out wherever it is (its client left, its wait ran out). False when it was no longer queued. */
  remove(queued: Queued<T>): boolean {
    const entry = queued as Entry<T>;
    if (!entry.queued) return false;
    const { flow } = entry;
    const index = flow.items.indexOf(entry, flow.head);
    if (index >= 0) flow.items[index] = undefined;
    this.forget(entry);
    // A removed head must not keep the flow's turn waiting on it.
    while (flow.head < flow.items.length && flow.items[flow.head] === undefined) flow.head++;
    this.compact(flow);
    if (flow.live === 0) this.leaveRing(flow.band, flow);
    return true;
  }

  /** The next request to dispatch, or undefined when nothing is queued. */
  pop(): Queued<T> | undefined {
    for (const band of this.bands) {
      if (band.live === 0) continue;
      for (;;) {
        if (band.turn >= band.ring.length) {
          band.turn = 0;
          band.credited = false;
        }
        const flow = band.ring[band.turn]!;
        if (flow.live === 0) {
          this.leaveRing(band, flow);
          continue;
        }
        const head = flow.items[flow.head]!;
        if (!band.credited) {
          flow.deficit += this.quantum;
          band.credited = true;
        }
        if (flow.deficit < head.cost) {
          band.turn++;
          band.credited = false;
          continue;
        }
        flow.deficit -= head.cost;
        flow.items[flow.head] = undefined;
        flow.head++;
        while (flow.head < flow.items.length && flow.items[flow.head] === undefined) flow.head++;
        this.forget(head);
        this.compact(flow);
        if (flow.live === 0) this.leaveRing(band, flow);
        else if (flow.deficit < (flow.items[flow.head]?.cost ?? Infinity)) {
          band.turn++;
          band.credited = false;
        }
        return head;
      }
    }
    return undefined;
  }

  /** Requests queued ahead of one in its band and the bands above (what it waits behind, at most). */
  ahead(priority: number): number {
    let n = 0;
    for (const band of this.bands) if (band.priority >= priority) n += band.live;
    return n;
  }

  depths(): BandDepth[] {
    return this.bands.filter((b) => b.live > 0).map((b) => ({ priority: b.priority, queued: b.live, flows: b.ring.length }));
  }

  private band(priority: number): Band<T> {
    let i = 0;
    while (i < this.bands.length && this.bands[i]!.priority > priority) i++;
    const found = this.bands[i];
    if (found?.priority === priority) return found;
    const band: Band<T> = { priority, flows: new Map(), ring: [], turn: 0, credited: false, live: 0 };
    this.bands.splice(i, 0, band);
    return band;
  }

  private forget(entry: Entry<T>): void {
    entry.queued = false;
    const { flow } = entry;
    flow.live--;
    flow.bytes -= entry.bytes;
    flow.band.live--;
    this.live--;
    this.liveBytes -= entry.bytes;
  }

  private compact(flow: Flow<T>): void {
    if (flow.head > 64 && flow.head * 2 > flow.items.length) {
      flow.items.splice(0, flow.head);
      flow.head = 0;
    }
    if (flow.live === 0) {
      flow.items.length = 0;
      flow.head = 0;
    }
  }

  private leaveRing(band: Band<T>, flow: Flow<T>): void {
    const at = band.ring.indexOf(flow);
    if (at >= 0) {
      band.ring.splice(at, 1);
      if (at < band.turn) band.turn--;
      else if (at === band.turn) band.credited = false;
    }
    flow.active = false;
    // An idle flow keeps no credit: deficit round-robin resets it, so idling cannot bank turns.
    flow.deficit = 0;
    band.flows.delete(flow.id);
    if (band.live === 0 && band.ring.length === 0) {
      const i = this.bands.indexOf(band);
      if (i >= 0) this.bands.splice(i, 1);
    }
  }
}
