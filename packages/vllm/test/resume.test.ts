import { describe, expect, it } from 'vitest';
import { withoutTokenIds } from '../src/resume.js';

describe('withoutTokenIds', () => {
  it('cuts the id members vLLM adds and leaves valid JSON with everything else as it was', () => {
    const chunk =
      '{"id":"c","choices":[{"index":0,"delta":{"reasoning":" the"},"finish_reason":null,"token_ids":[290,12]}],"usage":{"completion_tokens":13}}';
    expect(withoutTokenIds(chunk)).toBe(
      '{"id":"c","choices":[{"index":0,"delta":{"reasoning":" the"},"finish_reason":null}],"usage":{"completion_tokens":13}}',
    );
    expect(withoutTokenIds('{"id":"c","prompt_token_ids":[1,2,3],"choices":[{"delta":{},"token_ids":[]}]}')).toBe(
      '{"id":"c","choices":[{"delta":{}}]}',
    );
    // First and adjacent members: one comma goes with each.
    expect(withoutTokenIds('{"prompt_token_ids":[1],"token_ids":[2],"a":1}')).toBe('{"a":1}');
    expect(withoutTokenIds('{"token_ids":[2]}')).toBe('{}');
  });

  it('leaves text that only looks like ids, and other members ending in ids, alone', () => {
    for (const data of ['{"delta":{"content":"\\"token_ids\\":[3]"}}', '{"foo_ids":[1],"b":2}', '{"a":"ids\\":["}']) {
      expect(withoutTokenIds(data)).toBe(data);
      JSON.parse(withoutTokenIds(data));
    }
  });
});
