// BPF iterators (SEC("iter/<target>")): the link (BPF_LINK_CREATE, BPF_TRACE_ITER) fixes what is walked;
// every BPF_ITER_CREATE on it gives a new fd whose read() walks again, running the program synchronously
// inside the syscall. Reading is chunked and yields to the event loop between chunks.

import { BPF_ATTACH_TYPE, E, FD, NR, SyscallError, iterCreate, linkCreate, rawSyscall3 } from '../syscall/index.js';
import { arena } from '../syscall/native.js';
import { ClosedError, TsbpfError } from '../errors.js';
import type { Program } from '../programs/program.js';
import { Link, readLinkInfo } from './link.js';

/** Order of a cgroup iterator walk (enum bpf_cgroup_iter_order). */
export const CgroupIterOrder = {
  unspec: 0,
  selfOnly: 1,
  descendantsPre: 2,
  descendantsPost: 3,
  ancestorsUp: 4,
} as const;

export interface IterOptions {
  /** iter/bpf_map_elem, iter/bpf_sk_storage_map, iter/sockmap: the map to walk (a BpfMap, or an fd). */
  map?: { fd: number } | number;
  /** iter/cgroup: the cgroup (an open cgroup directory fd, or its id as a bigint) and the walk order. */
  cgroup?: { fd?: number; id?: bigint; order?: keyof typeof CgroupIterOrder | number };
  /** iter/task, iter/task_file, iter/task_vma: walk only this thread (`tid`), process (`pid`) or pidfd (6.1+). */
  task?: { tid?: number; pid?: number; pidFd?: number };
}

export interface IterReadOptions {
  /** Bytes asked for per read() syscall (default 64 KiB). Each read runs the program until it is full. */
  chunkSize?: number;
  /** Stop reading (the async iterator throws the signal's reason). */
  signal?: AbortSignal;
}

/** union bpf_iter_link_info: 16 bytes (the cgroup member is the largest). */
function iterLinkInfo(o: IterOptions): Buffer | undefined {
  const given = [o.map, o.cgroup, o.task].filter((x) => x !== undefined).length;
  if (given === 0) return undefined;
  if (given > 1) throw new TypeError('attachIter: give at most one of map, cgroup, task');
  const b = Buffer.alloc(16);
  if (o.map !== undefined) {
    const fd = typeof o.map === 'number' ? o.map : o.map.fd;
    if (!Number.isInteger(fd) || fd <= 0) throw new TypeError(`attachIter: map must be a map or an fd, got ${String(fd)}`);
    b.writeUInt32LE(fd, 0);
  } else if (o.cgroup !== undefined) {
    const c = o.cgroup;
    const order = typeof c.order === 'string' ? CgroupIterOrder[c.order] : c.order ?? 0;
    if (order === undefined) throw new TypeError(`attachIter: unknown cgroup order ${String(c.order)}`);
    if ((c.fd === undefined) === (c.id === undefined)) throw new TypeError('attachIter: cgroup needs exactly one of fd, id');
    b.writeUInt32LE(order, 0);
    b.writeUInt32LE(c.fd ?? 0, 4);
    b.writeBigUInt64LE(c.id ?? 0n, 8);
  } else if (o.task !== undefined) {
    const t = o.task;
    const n = [t.tid, t.pid, t.pidFd].filter((x) => x !== undefined).length;
    if (n !== 1) throw new TypeError('attachIter: task needs exactly one of tid, pid, pidFd');
    b.writeUInt32LE(t.tid ?? 0, 0);
    b.writeUInt32LE(t.pid ?? 0, 4);
    b.writeUInt32LE(t.pidFd ?? 0, 8);
  }
  return b;
}

/** Read up to `max` bytes from `fd` into a new Buffer (empty at the end). Retries EINTR/EAGAIN. */
function readChunk(fd: number, max: number, what: string): Buffer {
  arena.reserve(max + 64);
  for (let tries = 0; ; tries++) {
    arena.reset();
    const r = arena.alloc(max);
    const n = rawSyscall3(NR.read, BigInt(fd), r.addr, BigInt(max));
    if (n >= 0) return Buffer.from(arena.view.subarray(r.off, r.off + n));
    if ((n === -E.EINTR || n === -E.EAGAIN) && tries < 100) continue;
    throw new SyscallError('read', undefined, -n, `read iterator ${what}`);
  }
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** An iterator link: `read()`/`readAll()`/`text()` walk the target again each time. */
export class IterLink extends Link {
  /**
   * A new fd over a fresh walk (BPF_ITER_CREATE). read(2) runs the program; the caller owns and closes
   * the fd.
   */
  open(): FD {
    if (this.closed) throw new ClosedError(`link ${this.kind}:${this.target} is closed`);
    return iterCreate(this.fd, `iterator ${this.target} of "${this.program}": open`);
  }

  /**
   * Walk once, yielding the output as it is produced (one Buffer per read syscall). The event loop runs
   * between chunks; breaking out of the loop closes the fd.
   */
  async *read(o: IterReadOptions = {}): AsyncGenerator<Buffer, void, undefined> {
    const chunk = o.chunkSize ?? 64 * 1024;
    if (!Number.isInteger(chunk) || chunk <= 0) throw new TypeError(`iterator read: chunkSize must be a positive integer, got ${chunk}`);
    const fd = this.open();
    try {
      for (;;) {
        o.signal?.throwIfAborted();
        const b = readChunk(fd.value, chunk, `${this.target} of "${this.program}"`);
        if (b.length === 0) return;
        yield b;
        await yieldToLoop();
      }
    } finally {
      fd.close();
    }
  }

  /** Walk once and return all output. */
  async readAll(o: IterReadOptions = {}): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const b of this.read(o)) parts.push(b);
    return Buffer.concat(parts);
  }

  /** Walk once and return all output as UTF-8 text. */
  async text(o: IterReadOptions = {}): Promise<string> {
    return (await this.readAll(o)).toString('utf8');
  }

  /** Walk once without yielding to the event loop (for small iterations and scripts). */
  readAllSync(o: Omit<IterReadOptions, 'signal'> = {}): Buffer {
    const chunk = o.chunkSize ?? 64 * 1024;
    const fd = this.open();
    try {
      const parts: Buffer[] = [];
      for (;;) {
        const b = readChunk(fd.value, chunk, `${this.target} of "${this.program}"`);
        if (b.length === 0) return Buffer.concat(parts);
        parts.push(b);
      }
    } finally {
      fd.close();
    }
  }
}

/**
 * Create the link of an iterator program (its target was fixed at load from `SEC("iter/<target>")`).
 * `map`, `cgroup` or `task` parameterize targets that need it (iter/bpf_map_elem needs a map).
 */
export function attachIter(prog: Program, o: IterOptions = {}): IterLink {
  const info = iterLinkInfo(o);
  let fd: FD;
  try {
    fd = linkCreate({ progFd: prog.fd, attachType: BPF_ATTACH_TYPE.TRACE_ITER, iterInfo: info }, `attach iterator "${prog.name}"`);
  } catch (e) {
    if (e instanceof SyscallError && (e.errnoCode === E.EBADF || e.errnoCode === E.EACCES) && o.map === undefined && o.cgroup === undefined) {
      throw new TsbpfError(`iterator "${prog.name}": the kernel refused the link (${e.errno}): an iterator over a map or cgroup needs attachIter(prog, { map }) or { cgroup }`, { cause: e });
    }
    throw e;
  }
  let target = 'iter';
  try {
    target = readLinkInfo(fd.value).name ?? target;
  } catch {
    /* kernels without iter link info (before 5.9): keep the generic name */
  }
  return new IterLink('iter', target, prog.name, { fd });
}
