import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Preloaded into a bench target (`node --import heap-probe.js target.js`): on SIGUSR2 it collects
 * garbage and prints `heap-used <bytes>`, so the bench reads the live heap of any target,
 * whatever build it comes from.
 */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
process.on('SIGUSR2', () => {
  gc();
  gc();
  process.stdout.write(`heap-used ${process.memoryUsage().heapUsed}\n`);
});
