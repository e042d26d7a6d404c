import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { BreakerOptions } from '@tera-gw/circuit-breaker';
import { Replica } from './replica.js';

/** Addresses a host name resolves to: every one becomes a replica (a Kubernetes headless Service, Envoy's STRICT_DNS). */
export type Resolve = (hostname: string) => Promise<string[]>;

export const resolveAll: Resolve = async (hostname) => (await lookup(hostname, { all: true })).map((a) => a.address);

export interface ReplicaSetOptions {
  breaker?: BreakerOptions | undefined;
  /** `--max-num-seqs` by configured URL, or one number for all. */
  maxNumSeqs?: number | Readonly<Record<string, number>> | undefined;
  resolve: Resolve;
  /** A replica that left the set and still runs requests: told once (the adapter stops routing to it). */
  onDraining: (replica: Replica) => void;
  /** A replica joined: it is checked and warmed before it takes traffic. */
  onAdded: (replica: Replica) => void;
  /** A drained replica is gone. */
  onRemoved: (replica: Replica) => void;
  /** Resolving a name failed: its replicas are kept as they were. */
  onResolveError: (url: string, err: unknown) => void;
}

/**
 * The replicas of the pool, from the configured URLs: an IP literal is one replica, a host name
 * one replica per address it resolves to, re-resolved on `refresh()`. A replica that leaves
 * (its address gone, `set()` without it) drains: it takes no new request, finishes what it runs,
 * then is closed.
 */
export class ReplicaSet {
  private urls: string[] = [];
  private readonly live = new Map<string, Replica>();
  private readonly draining = new Set<Replica>();

  constructor(private readonly options: ReplicaSetOptions) {}

  /** Every replica that takes traffic, then those draining (they still run streams). */
  get all(): readonly Replica[] {
    return [...this.live.values(), ...this.draining];
  }

  get active(): readonly Replica[] {
    return [...this.live.values()];
  }

  /** True when some configured URL names a host to resolve. */
  get resolvesNames(): boolean {
    return this.urls.some((u) => !isIP(new URL(u).hostname.replace(/^\[|\]$/g, '')));
  }

  /** Sets the configured URLs and resolves them; replicas no longer named drain. */
  async set(urls: readonly string[]): Promise<void> {
    this.urls = [...urls];
    await this.refresh();
  }

  /** The URLs and addresses now, synchronously: for the first set, before any name is resolved (IP literals only). */
  setLiterals(urls: readonly string[]): void {
    this.urls = [...urls];
    this.apply(this.urls.flatMap((u) => (this.isLiteral(u) ? [this.target(u, undefined)] : [])));
  }

  /** Resolves every name again; a name that fails to resolve keeps the replicas it had. */
  async refresh(): Promise<void> {
    const targets: Array<{ key: string; url: string; address: string | undefined; configured: string }> = [];
    for (const url of this.urls) {
      if (this.isLiteral(url)) {
        targets.push(this.target(url, undefined));
        continue;
      }
      try {
        const addresses = await this.options.resolve(new URL(url).hostname);
        for (const address of [...new Set(addresses)].sort()) targets.push(this.target(url, address));
      } catch (err) {
        this.options.onResolveError(url, err);
        for (const [key, r] of this.live) if (r.configured === url) targets.push({ key, url, address: r.address, configured: url });
      }
    }
    this.apply(targets);
  }

  /** Called when a draining replica's in-flight count may have reached zero. */
  sweep(): void {
    for (const r of this.draining) {
      if (r.inFlight > 0) continue;
      this.draining.delete(r);
      r.close();
      this.options.onRemoved(r);
    }
  }

  close(): void {
    for (const r of this.all) r.close();
    this.live.clear();
    this.draining.clear();
  }

  private isLiteral(url: string): boolean {
    return isIP(new URL(url).hostname.replace(/^\[|\]$/g, '')) !== 0;
  }

  private target(url: string, address: string | undefined) {
    return { key: `${url} ${address ?? ''}`, url, address, configured: url };
  }

  private apply(targets: ReadonlyArray<{ key: string; url: string; address: string | undefined; configured: string }>): void {
    const wanted = new Set(targets.map((t) => t.key));
    for (const [key, replica] of this.live) {
      if (wanted.has(key)) continue;
      this.live.delete(key);
      replica.state = 'draining';
      this.draining.add(replica);
      this.options.onDraining(replica);
    }
    for (const t of targets) {
      if (this.live.has(t.key)) continue;
      const seqs = this.options.maxNumSeqs;
      const configured = typeof seqs === 'number' ? seqs : (seqs?.[t.configured] ?? seqs?.[t.configured.replace(/\/+$/, '')]);
      const replica = new Replica(t.url, this.options.breaker, configured, t.address);
      this.live.set(t.key, replica);
      this.options.onAdded(replica);
    }
    this.sweep();
  }
}
