export { startSimulator, type SimulatorHandle } from './server.js';
export { spawnSimulator, type SimulatorProcess } from './spawn.js';
export {
  FAULTS,
  TOOL_CALL_QUIRKS,
  type Fault,
  type ReasoningField,
  type RuntimeConfig,
  type SimulatorOptions,
  type ToolCallQuirk,
} from './options.js';
export { instanceOf } from './schema-instance.js';
export { SimMetrics } from './metrics.js';
