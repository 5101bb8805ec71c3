// perf_event programs (SEC("perf_event")) on sampling events: one perf event per CPU (or per task),
// the program attached to each with a bpf_link (BPF_PERF_EVENT, 5.15+) or the SET_BPF ioctl before that.

import {
  BPF_ATTACH_TYPE, BpfError, E, PERF_EVENT_IOC, PERF_TYPE, ioctl, linkCreate, onlineCpus, perfEventOpen, type PerfEventAttr,
} from '../syscall/index.js';
import { NotSupportedError } from '../errors.js';
import type { Program } from '../programs/program.js';
import { Link } from './link.js';

/** PERF_COUNT_SW_* (include/uapi/linux/perf_event.h). */
export const PerfSoftware = {
  cpuClock: 0,
  taskClock: 1,
  pageFaults: 2,
  contextSwitches: 3,
  cpuMigrations: 4,
  pageFaultsMin: 5,
  pageFaultsMaj: 6,
  alignmentFaults: 7,
  emulationFaults: 8,
  dummy: 9,
  bpfOutput: 10,
  cgroupSwitches: 11,
} as const;

/** PERF_COUNT_HW_* (include/uapi/linux/perf_event.h). */
export const PerfHardware = {
  cpuCycles: 0,
  instructions: 1,
  cacheReferences: 2,
  cacheMisses: 3,
  branchInstructions: 4,
  branchMisses: 5,
  busCycles: 6,
  stalledCyclesFrontend: 7,
  stalledCyclesBackend: 8,
  refCpuCycles: 9,
} as const;

export interface PerfEventOptions {
  /** A CPU id, or 'all' for one event per online CPU. Default: 'all', or "any CPU" (-1) when `pid` is given. */
  cpu?: number | 'all';
  /** Only sample this process/thread (default -1: every task on the CPU). */
  pid?: number;
  /** PERF_TYPE_* (default PERF_TYPE_SOFTWARE). */
  type?: number;
  /** The event of that type (default PERF_COUNT_SW_CPU_CLOCK). */
  config?: number | bigint;
  /** Run the program every N events (for clocks: nanoseconds). */
  samplePeriod?: number | bigint;
  /** Or about N times per second (the kernel adjusts the period). Default: 99 Hz when neither is given. */
  sampleFreq?: number;
  /** Other perf_event_attr fields by name (`exclude_kernel`, `config1`, `inherit`, …). */
  attr?: PerfEventAttr;
  /** bpf_get_attach_cookie() value (needs the bpf_link attach, 5.15+). */
  cookie?: bigint;
}

function attachOne(prog: Program, attr: PerfEventAttr, pid: number, cpu: number, cookie: bigint | undefined, target: string): Link {
  const perf = perfEventOpen(attr, pid, cpu, -1, 0n, `perf event ${target}`);
  try {
    try {
      const fd = linkCreate({ progFd: prog.fd, targetFd: perf.value, attachType: BPF_ATTACH_TYPE.PERF_EVENT, bpfCookie: cookie }, `attach "${prog.name}" to perf event ${target}`);
      return new Link('perf_event', target, prog.name, fd, perf);
    } catch (e) {
      if (!(e instanceof BpfError) || (e.errnoCode !== E.EINVAL && e.errnoCode !== E.E2BIG && e.errnoCode !== E.EOPNOTSUPP)) throw e;
      if (cookie) throw new NotSupportedError('BPF cookies on perf events', '5.15');
      ioctl(perf.value, PERF_EVENT_IOC.SET_BPF, prog.fd, `attach "${prog.name}" to perf event ${target}`);
      ioctl(perf.value, PERF_EVENT_IOC.ENABLE, 0, `enable perf event ${target}`);
      return new Link('perf_event', target, prog.name, { perf });
    }
  } catch (e) {
    perf.close();
    throw e;
  }
}

function eventName(type: number, config: bigint): string {
  if (type === PERF_TYPE.SOFTWARE) {
    const n = Object.entries(PerfSoftware).find(([, v]) => BigInt(v) === config);
    if (n) return n[0];
  }
  if (type === PERF_TYPE.HARDWARE) {
    const n = Object.entries(PerfHardware).find(([, v]) => BigInt(v) === config);
    if (n) return n[0];
  }
  return `type ${type} config 0x${config.toString(16)}`;
}

/**
 * Attach a perf_event program to a sampling event: software cpu-clock at 99 Hz on every online CPU unless
 * told otherwise. Returns one Link per CPU for `cpu: 'all'`, else one Link.
 */
export function attachPerfEvent(prog: Program, o: PerfEventOptions & { cpu: number }): Link;
export function attachPerfEvent(prog: Program, o: PerfEventOptions & { cpu: 'all' }): Link[];
export function attachPerfEvent(prog: Program, o: PerfEventOptions & { pid: number; cpu?: undefined }): Link;
export function attachPerfEvent(prog: Program, o?: PerfEventOptions): Link | Link[];
export function attachPerfEvent(prog: Program, o: PerfEventOptions = {}): Link | Link[] {
  if (o.samplePeriod !== undefined && o.sampleFreq !== undefined) throw new TypeError('attachPerfEvent: give samplePeriod or sampleFreq, not both');
  const type = o.type ?? PERF_TYPE.SOFTWARE;
  const config = BigInt(o.config ?? PerfSoftware.cpuClock);
  const pid = o.pid ?? -1;
  if (!Number.isInteger(pid) || pid < -1) throw new TypeError(`attachPerfEvent: pid must be an integer ≥ -1, got ${pid}`);
  const cpu = o.cpu ?? (o.pid !== undefined ? -1 : 'all');
  if (cpu !== 'all' && (!Number.isInteger(cpu) || cpu < -1)) throw new TypeError(`attachPerfEvent: cpu must be a CPU id or 'all', got ${String(cpu)}`);
  if (cpu === -1 && pid === -1) throw new TypeError('attachPerfEvent: an event on any CPU needs a pid');
  const attr: PerfEventAttr = { type, config };
  if (o.samplePeriod !== undefined) attr.sample_period = BigInt(o.samplePeriod);
  else {
    const freq = o.sampleFreq ?? 99;
    if (!Number.isInteger(freq) || freq <= 0) throw new TypeError(`attachPerfEvent: sampleFreq must be a positive integer, got ${freq}`);
    attr.sample_freq = BigInt(freq);
    attr.freq = true;
  }
  Object.assign(attr, o.attr ?? {});
  const name = eventName(type, config);
  const where = (c: number): string => `${name}${c >= 0 ? ` cpu ${c}` : ''}${pid >= 0 ? ` pid ${pid}` : ''}`;
  if (cpu !== 'all') return attachOne(prog, attr, pid, cpu, o.cookie, where(cpu));
  const links: Link[] = [];
  try {
    for (const c of onlineCpus()) links.push(attachOne(prog, attr, pid, c, o.cookie, where(c)));
  } catch (e) {
    for (const l of links) l.close();
    throw e;
  }
  return links;
}

/** Close every link of a per-CPU attachment. */
export function closeAll(links: Link | Link[] | undefined): void {
  if (!links) return;
  for (const l of Array.isArray(links) ? links : [links]) l.close();
}

