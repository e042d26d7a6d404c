/** The Prometheus metrics vLLM's V1 engine exports, with its names and labels. */
const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];

export class SimMetrics {
  running = 0;
  waiting = 0;
  prefixQueries = 0;
  prefixHits = 0;
  kvCacheUsage = 0;
  promptTokens = 0;
  generationTokens = 0;
  readonly finished = { stop: 0, length: 0, abort: 0 };
  readonly ttftCounts = new Array<number>(TTFT_BUCKETS.length).fill(0);
  ttftSum = 0;
  ttftCount = 0;

  constructor(private readonly model: string) {}

  observeTTFT(seconds: number): void {
    this.ttftSum += seconds;
    this.ttftCount++;
    for (let i = 0; i < TTFT_BUCKETS.length; i++) if (seconds <= TTFT_BUCKETS[i]!) this.ttftCounts[i]!++;
  }

  render(): string {
    const l = `engine="0",model_name="${this.model}"`;
    const lines = [
      '# HELP vllm:num_requests_running Number of requests in model execution batches.',
      '# TYPE vllm:num_requests_running gauge',
      `vllm:num_requests_running{${l}} ${this.running}`,
      '# HELP vllm:num_requests_waiting Number of requests waiting to be processed.',
      '# TYPE vllm:num_requests_waiting gauge',
      `vllm:num_requests_waiting{${l}} ${this.waiting}`,
      '# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.',
      '# TYPE vllm:kv_cache_usage_perc gauge',
      `vllm:kv_cache_usage_perc{${l}} ${this.kvCacheUsage}`,
      '# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.',
      '# TYPE vllm:prefix_cache_queries_total counter',
      `vllm:prefix_cache_queries_total{${l}} ${this.prefixQueries}`,
      '# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.',
      '# TYPE vllm:prefix_cache_hits_total counter',
      `vllm:prefix_cache_hits_total{${l}} ${this.prefixHits}`,
      '# HELP vllm:prompt_tokens_total Number of prefill tokens processed.',
      '# TYPE vllm:prompt_tokens_total counter',
      `vllm:prompt_tokens_total{${l}} ${this.promptTokens}`,
      '# HELP vllm:generation_tokens_total Number of generation tokens processed.',
      '# TYPE vllm:generation_tokens_total counter',
      `vllm:generation_tokens_total{${l}} ${this.generationTokens}`,
      '# HELP vllm:request_success_total Count of successfully processed requests.',
      '# TYPE vllm:request_success_total counter',
    ];
    for (const reason of ['stop', 'length', 'abort'] as const) {
      lines.push(`vllm:request_success_total{${l},finished_reason="${reason}"} ${this.finished[reason]}`);
    }
    lines.push(
      '# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.',
      '# TYPE vllm:time_to_first_token_seconds histogram',
    );
    for (let i = 0; i < TTFT_BUCKETS.length; i++) {
      lines.push(`vllm:time_to_first_token_seconds_bucket{${l},le="${TTFT_BUCKETS[i]}"} ${this.ttftCounts[i]}`);
    }
    lines.push(
      `vllm:time_to_first_token_seconds_bucket{${l},le="+Inf"} ${this.ttftCount}`,
      `vllm:time_to_first_token_seconds_count{${l}} ${this.ttftCount}`,
      `vllm:time_to_first_token_seconds_sum{${l}} ${this.ttftSum}`,
    );
    return lines.join('\n') + '\n';
  }
}
