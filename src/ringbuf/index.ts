export { RingBufReader, type RingBufReaderOptions, type ReadOptions, type IterateOptions, type RecordCallback, type InPlaceCallback, type ListenOptions } from './ringbuf.js';
export { waiterThreads, waitersIdle } from './waiter.js';
export { PerfReader, type PerfReaderOptions, type PerfReadOptions, type PerfIterateOptions, type PerfRecordCallback, type PerfSample, type PerfInPlaceCallback, type PerfListenOptions } from './perf.js';
export { type DecodeAs } from './decode.js';
export { UserRingBufWriter, UserRingBufRecord, type UserRingBufReserveOptions } from './user.js';
export { RecordBatch } from './record-batch.js';
