// Run by test/syscall.test.ts: with fd 0 closed, the kernel hands out 0 for the next fd; FD must move it.
import { mapCreate, BPF_MAP_TYPE } from '../../src/syscall/index.js';
import { rawSyscall3, NR } from '../../src/syscall/native.js';

// close(0) behind libuv's back (libuv refuses to close stdio fds itself).
rawSyscall3(NR.close, 0n, 0n, 0n);
const fd = mapCreate({ mapType: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1 });
process.stdout.write(JSON.stringify({ fd: fd.value }));
fd.close();
