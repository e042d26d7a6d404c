export { admission, type AdmissionOptions, type AdmissionPool, type AdmissionStage, type QueueStatus } from './admission.js';
export {
  FlowScheduler,
  DEFAULT_QUEUE_LIMITS,
  type BandDepth,
  type EnqueueInput,
  type QueueLimits,
  type Queued,
  type Refusal,
} from './scheduler.js';
