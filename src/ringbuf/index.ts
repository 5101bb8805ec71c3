export { RingBufReader, type RingBufReaderOptions, type ReadOptions, type IterateOptions, type RecordCallback, type InPlaceCallback } from './ringbuf.js';
export { waiterThreads, waitersIdle } from './waiter.js';
export { PerfReader, type PerfReaderOptions, type PerfReadOptions, type PerfIterateOptions, type PerfRecordCallback, type PerfSample, type PerfInPlaceCallback } from './perf.js';
