import { Agent, request } from 'node:http';

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

export interface Timing {
  /** Response headers to last byte, microseconds. */
  totalUs: number;
  /** Request sent to first body byte, microseconds. */
  firstByteUs: number;
  /** Largest gap between two body chunks, microseconds. */
  maxGapUs: number;
  bytes: number;
}

/** One request at a time over one keep-alive connection, timed with the high-resolution clock. */
export function timeRequest(url: string, body: string, headers: Record<string, string> = {}): Promise<Timing> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let first = 0n;
    let last = 0n;
    let maxGap = 0n;
    let bytes = 0;
    const req = request(
      {
        agent,
        hostname: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.on('data', (d: Buffer) => {
          const now = process.hrtime.bigint();
          if (first === 0n) first = now;
          else if (now - last > maxGap) maxGap = now - last;
          last = now;
          bytes += d.length;
        });
        res.on('end', () => {
          if ((res.statusCode ?? 0) !== 200) return reject(new Error(`status ${res.statusCode}`));
          if (res.headers['content-type']?.startsWith('text/event-stream') === false && body.includes('"stream":true'))
            return reject(new Error('a stream was answered without SSE'));
          const end = process.hrtime.bigint();
          resolve({
            totalUs: Number(end - start) / 1000,
            firstByteUs: Number(first - start) / 1000,
            maxGapUs: Number(maxGap) / 1000,
            bytes,
          });
        });
      },
    );
    req.on('error', reject);
    // A target that never answers must fail the measurement, not hang the run.
    req.setTimeout(30_000, () => req.destroy(new Error('no answer within 30 s')));
    req.end(body);
  });
}

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

export async function latencyRun(
  url: string,
  body: string,
  count: number,
  headers: Record<string, string> = {},
  warmUp = Math.min(200, count),
): Promise<Timing[]> {
  for (let i = 0; i < warmUp; i++) await timeRequest(url, body, headers);
  const out: Timing[] = [];
  for (let i = 0; i < count; i++) out.push(await timeRequest(url, body, headers));
  return out;
}
