// Pinning maps (and any BPF object) in a BPF filesystem.

import { statfsSync, existsSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { ensureBpffs } from '../syscall/index.js';
import { TsbpfError } from '../errors.js';

const BPF_FS_MAGIC = 0xcafe4a11;

/**
 * Throw unless `path` lies in a mounted bpffs (pins anywhere else fail or, worse, create plain files).
 * With `pin`, the directory the pin goes into must exist too (the kernel creates no directories).
 * Everything here is checked through node:fs, before any bpf() call.
 */
export function checkBpffsPath(path: string, options: { pin?: boolean } = {}): void {
  if (typeof path !== 'string') {
    throw new TypeError(`pin path must be a string (an absolute path under /sys/fs/bpf or another bpffs mount), got ${path === null ? 'null' : typeof path}`);
  }
  if (path === '') throw new TsbpfError('pin path is empty: it must be an absolute path in a BPF filesystem, e.g. /sys/fs/bpf/NAME');
  if (path.includes('\0')) throw new TsbpfError(`pin path ${JSON.stringify(path)} contains a NUL byte`);
  if (!path.startsWith('/')) {
    throw new TsbpfError(`pin path "${path}" must be absolute, in a BPF filesystem (e.g. /sys/fs/bpf/${path.replace(/^(\.\/)+/, '')})`);
  }
  // The default location is mounted on demand, as libbpf users expect.
  if (path.startsWith('/sys/fs/bpf/') || path === '/sys/fs/bpf') ensureBpffs('/sys/fs/bpf');
  let dir = existsSync(path) ? path : dirname(path);
  while (!existsSync(dir) && dir !== '/') dir = dirname(dir);
  let type: number;
  try {
    type = statfsSync(dir).type;
  } catch (e) {
    throw new TsbpfError(`pin path "${path}": cannot stat ${dir}`, { cause: e });
  }
  if (type !== BPF_FS_MAGIC) {
    throw new TsbpfError(`pin path "${path}" is not in a BPF filesystem (${dir} is filesystem 0x${type.toString(16)}); use a path under /sys/fs/bpf or mount -t bpf bpf DIR`);
  }
  const parent = dirname(path);
  if (options.pin && !existsSync(parent)) {
    throw new TsbpfError(`pin path "${path}": directory ${parent} does not exist; create it first (mkdir -p ${parent}; directories in a bpffs are made with mkdir)`);
  }
}

/** Remove a pin. Returns false when there was none. */
export function unpin(path: string): boolean {
  checkBpffsPath(path);
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new TsbpfError(`unpin ${path}: ${(e as Error).message}`, { cause: e });
  }
}
