export { type Clock, monotonicClock, ManualClock } from '../clock.js';
export { type JobPriority, type JobQueue, FifoQueue, PriorityJobQueue, type PriorityJobQueueOptions } from './jobQueue.js';
export { WorkerPool, boundedPool, type PoolJobs, type PoolSettings, type WorkerPoolOptions, type WorkerPoolStats } from './workerPool.js';
export { TokenBucket, TokenBucketMap, type TokenBucketMapOptions } from './tokenBucket.js';
export { CircuitBreaker, type BreakerState, type CircuitBreakerOptions } from './circuitBreaker.js';
export { LruMap } from './lru.js';
export { RepeatingWarning, type RepeatingWarningOptions } from './rateLimitedLog.js';
