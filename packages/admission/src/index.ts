export { admission, type AdmissionStage, type QueueStatus } from './admission.js';
export { admissionOptionsSchema, type AdmissionOptions } from './options.js';
export {
  FlowScheduler,
  DEFAULT_QUEUE_LIMITS,
  type BandDepth,
  type EnqueueInput,
  type QueueLimits,
  type Queued,
  type Refusal,
} from './scheduler.js';
