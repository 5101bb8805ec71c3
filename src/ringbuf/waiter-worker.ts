// The body of the shared waiter thread, as plain JavaScript source run with `new Worker(src, { eval: true })`.
//
// Why a string: the worker must run both under the test loader (TypeScript sources) and from the compiled
// package (dist/*.js), and an eval'd CommonJS body needs neither a loader nor a file next to the module.
// It imports nothing of tsbpf: it gets ffi-rs's resolved path and plain numbers through `workerData`.
//
// What it does: block in epoll_wait on the epoll fd the main thread owns (the main thread adds and
// removes the ring fds itself; epoll_ctl is safe while another thread waits), and post the 64-bit user
// values of ready fds as one message per wakeup. User value 0 is the eventfd: the main thread writes it
// to stop the thread. The wait has a finite timeout so that, whatever happens, the thread returns to
// JavaScript now and then and can be terminated (Node joins worker threads at exit).
//
// ffi-rs hazard: a process in which ffi-rs was loaded by a worker but not by the main thread crashes
// (SIGSEGV) when the worker exits (the addon is unloaded under it). tsbpf's main thread has always loaded
// ffi-rs before it starts this worker (it creates the epoll fd), which keeps the addon loaded.

export interface WaiterWorkerData {
  ffiPath: string;
  epfd: number;
  /** epoll_wait syscall number, or -1 to use epoll_pwait (`pwaitNr`) as on arm64. */
  waitNr: number;
  pwaitNr: number;
  eventSize: number;
  dataOffset: number;
  maxEvents: number;
  timeoutMs: number;
}

export const WAITER_WORKER_SOURCE = String.raw`
'use strict';
const { parentPort, workerData: d } = require('node:worker_threads');
const ffi = require(d.ffiPath);
ffi.open({ library: 'libc', path: 'libc.so.6' });
const T = ffi.DataType;
// Buffer.alloc is never a slice of the shared pool (hazard 6), and this constant keeps it alive for the
// life of the thread while the kernel writes into it (hazard 1).
const events = Buffer.alloc(d.eventSize * d.maxEvents);
const pwait = d.waitNr < 0;
const paramsType = pwait
  ? [T.I64, T.I64, T.U8Array, T.I64, T.I64, T.I64, T.I64]
  : [T.I64, T.I64, T.U8Array, T.I64, T.I64];
const paramsValue = pwait
  ? [d.pwaitNr, d.epfd, events, d.maxEvents, d.timeoutMs, 0, 8]
  : [d.waitNr, d.epfd, events, d.maxEvents, d.timeoutMs];
const call = { library: 'libc', funcName: 'syscall', retType: T.I64, paramsType, paramsValue };
let failures = 0;
for (;;) {
  const n = ffi.load(call);
  if (n < 0) {
    // EINTR mostly; anything persistent (EBADF: the epoll fd is gone) ends the thread.
    if (++failures > 100) {
      parentPort.postMessage({ error: 'epoll_wait keeps failing' });
      break;
    }
    continue;
  }
  failures = 0;
  let stop = false;
  const ready = [];
  for (let i = 0; i < n; i++) {
    const at = i * d.eventSize + d.dataOffset;
    const id = events.readUInt32LE(at) + events.readUInt32LE(at + 4) * 4294967296;
    if (id === 0) stop = true;
    else ready.push(id);
  }
  if (ready.length) parentPort.postMessage(ready);
  if (stop) break;
}
`;
