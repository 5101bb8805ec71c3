export { RingBufReader, type RingBufReaderOptions, type ReadOptions, type IterateOptions, type RecordCallback } from './ringbuf.js';
export { waiterThreads, waitersIdle } from './waiter.js';
