export * from './kernel-defs.generated.js';
export * from './errors.js';
export * from './fd.js';
export * from './bpf.js';
export * from './os.js';
export * from './layout.js';
export { rawSyscall, rawSyscall3, NR } from './native.js';
export * from './uprobe-sys.js';
export * from './socket.js';
