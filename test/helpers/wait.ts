export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until the condition holds, or fails naming what it waited for. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}
