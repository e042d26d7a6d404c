// Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by file, and
// inclusive time by function (a sample counts once per function on its stack), top N.
// Usage: node scripts/cpuprofile-top.mjs <file.cpuprofile> [N]
import { readFileSync } from 'node:fs';

const [file, n = '30'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node scripts/cpuprofile-top.mjs <file.cpuprofile> [N]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const self = new Map();
const deltas = profile.timeDeltas;
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFunction = new Map();
const byFile = new Map();
for (const [id, us] of self) {
  const { callFrame } = byId.get(id);
  const where = callFrame.url.replace(/^.*node_modules\/(\.pnpm\/)?/, '').replace(/^file:\/\/.*\/packages\//, 'packages/');
  const fn = `${callFrame.functionName || '(anonymous)'} ${where}:${callFrame.lineNumber + 1}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  const key = where || `(${callFrame.functionName})`;
  byFile.set(key, (byFile.get(key) ?? 0) + us);
}
const show = (title, map) => {
  console.log(`\n${title} (of ${(total / 1000).toFixed(0)} ms sampled)`);
  for (const [k, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, Number(n)))
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
};
const parentOf = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
const keyOf = (node) => {
  const { callFrame } = node;
  const where = callFrame.url.replace(/^.*node_modules\/(\.pnpm\/)?/, '').replace(/^file:\/\/.*\/packages\//, 'packages/');
  return `${callFrame.functionName || '(anonymous)'} ${where}:${callFrame.lineNumber + 1}`;
};
const inclusive = new Map();
for (const [id, us] of self) {
  const seen = new Set();
  for (let at = id; at !== undefined; at = parentOf.get(at)) seen.add(keyOf(byId.get(at)));
  for (const key of seen) inclusive.set(key, (inclusive.get(key) ?? 0) + us);
}
show('self time by file', byFile);
show('self time by function', byFunction);
if (process.env.INCLUSIVE) show('inclusive time by function', inclusive);
