// perf_event_open on the uprobe PMU: the attr points at the binary's path (config1), so the path must sit in
// native memory next to the attr for the duration of the call. perfEventOpen() in os.ts copies only the attr.

import { readFileSync } from 'node:fs';
import { arena, NR, rawSyscall } from './native.js';
import { layoutSize, writeFields } from './layout.js';
import { SyscallError, E } from './errors.js';
import { FD } from './fd.js';
import { NotSupportedError } from '../errors.js';

const PERF_FLAG_FD_CLOEXEC = 8n;
const PMU_DIR = '/sys/bus/event_source/devices/uprobe';

export interface UprobePmu {
  /** perf_event_attr.type of the uprobe PMU. */
  type: number;
  /** Bit of `config` that makes a uretprobe. */
  retprobeBit: number;
  /** First bit of `config` that holds ref_ctr_offset (undefined: kernel before 4.20, no semaphores). */
  refCtrShift: number | undefined;
}

let pmu: UprobePmu | undefined;

/** Reads `config:N` or `config:N-M` → N. */
function formatBit(file: string): number | undefined {
  try {
    const m = /^config:(\d+)/.exec(readFileSync(file, 'utf8').trim());
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The uprobe PMU (sysfs), read once. NotSupportedError when the kernel has none (before 4.17). */
export function uprobePmu(): UprobePmu {
  if (pmu) return pmu;
  let type: number;
  try {
    type = parseInt(readFileSync(`${PMU_DIR}/type`, 'utf8'), 10);
  } catch {
    throw new NotSupportedError('the uprobe PMU', '4.17', `${PMU_DIR}/type is missing (is CONFIG_UPROBE_EVENTS set?)`);
  }
  pmu = {
    type,
    retprobeBit: formatBit(`${PMU_DIR}/format/retprobe`) ?? 0,
    refCtrShift: formatBit(`${PMU_DIR}/format/ref_ctr_offset`),
  };
  return pmu;
}

export interface UprobeEventAttr {
  /** Absolute path of the binary (the kernel resolves it to an inode). */
  path: string;
  /** File offset of the probed instruction. */
  offset: number | bigint;
  retprobe?: boolean;
  /** File offset of a USDT semaphore (u16) the kernel increments while the probe exists; 0 for none. */
  refCtrOffset?: number | bigint;
}

/** A uprobe/uretprobe perf event (close-on-exec). `pid` -1 = every process, else that process only. */
export function perfEventOpenUprobe(a: UprobeEventAttr, pid: number, context?: string): FD {
  const p = uprobePmu();
  let config = a.retprobe ? 1n << BigInt(p.retprobeBit) : 0n;
  const ref = BigInt(a.refCtrOffset ?? 0);
  if (ref !== 0n) {
    if (p.refCtrShift === undefined) throw new NotSupportedError('uprobe reference counters (USDT semaphores)', '4.20');
    if (ref < 0n || ref >= 1n << BigInt(64 - p.refCtrShift)) throw new RangeError(`ref_ctr_offset ${ref} does not fit the uprobe PMU config`);
    config |= ref << BigInt(p.refCtrShift);
  }
  const size = layoutSize('perf_event_attr');
  const path = Buffer.from(a.path + '\0', 'utf8');
  arena.reserve(size + path.length + 64);
  arena.reset();
  const attr = arena.alloc(size);
  const pathAddr = arena.copyIn(path);
  writeFields(arena.view, attr.off, 'perf_event_attr', {
    size,
    type: p.type,
    config,
    config1: pathAddr,
    config2: BigInt(a.offset),
    sample_period: 1n,
    wakeup_events: 1,
  });
  // perf_event_open refuses pid -1 with cpu -1, so "every process" is pid -1 on cpu 0: an attached BPF
  // program still runs on every CPU (it hangs off the probe, not the event's CPU); a pid filter uses cpu -1.
  const r = rawSyscall(NR.perf_event_open, attr.addr, BigInt(pid), pid === -1 ? 0n : -1n, -1n, PERF_FLAG_FD_CLOEXEC);
  if (r < 0) throw new SyscallError('perf_event_open', undefined, -r, context, uprobeHint(-r, a));
  return new FD(r);
}

function uprobeHint(errno: number, a: UprobeEventAttr): string | undefined {
  switch (errno) {
    case E.ENOENT:
      return `${a.path} does not exist or cannot be opened by the kernel`;
    case E.EINVAL:
      return `the kernel refused offset 0x${BigInt(a.offset).toString(16)} in ${a.path} (past the end of the file, or not an instruction boundary)`;
    case E.ESRCH:
      return 'no such process (pid filter)';
    case E.EPERM:
    case E.EACCES:
      return 'uprobes need root or CAP_PERFMON + CAP_SYS_ADMIN (check kernel.perf_event_paranoid)';
    default:
      return undefined;
  }
}
