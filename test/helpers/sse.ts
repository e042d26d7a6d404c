/** The `data:` payloads of an SSE text in order, `[DONE]` included; `event:`, `id:` and comment lines are skipped. */
export function sseData(text: string): string[] {
  const out: string[] = [];
  for (const block of text.split('\n\n')) {
    for (const line of block.split('\n')) if (line.startsWith('data: ')) out.push(line.slice('data: '.length));
  }
  return out;
}
