// `tsbpf run runqlat`: summarize scheduler run-queue latency (the time a task waits between becoming
// runnable and running on a CPU) as log2 histograms, in the classic runqlat's format. An example of the
// public API only: configure bpf/runqlat.o through its read-only globals, fill a cgroup array map from JS,
// attach raw tracepoints, then read, print and clear a hash map of histograms decoded through BTF.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Collection, autoAttach, loadCollectionSpec, openCgroup, ownedFdCount, setVariable,
  type Link,
} from '../index.js';

export const USAGE = `Usage: tsbpf run runqlat [-T] [-m] [--pidnss] [-L] [-P] [-p PID] [-c CGROUP] [interval] [count]

Summarize run queue (scheduler) latency as a histogram: how long tasks waited between becoming runnable
and running on a CPU. Prints every interval seconds, count times (default: once, on Ctrl-C or SIGTERM).

Options:
  -T, --timestamp      include a timestamp (HH:MM:SS) before each summary
  -m, --milliseconds   millisecond histogram (default: microseconds)
  -P, --pids           print a histogram per process ID (headed pid = PID COMM)
  -L, --tids           print a histogram per thread ID (headed tid = TID COMM)
      --pidnss         print a histogram per PID namespace (headed pidns = INODE)
  -p, --pid PID        trace this process only
  -c, --cgroup PATH    trace tasks under this cgroup v2 directory only (absolute, or relative to the
                       cgroup v2 root)
  -h, --help           show this help

Examples:
  tsbpf run runqlat         # summarize run queue latency as a histogram
  tsbpf run runqlat 1 10    # print 1 second summaries, 10 times
  tsbpf run runqlat -mT 1   # 1s summaries, milliseconds, and timestamps
  tsbpf run runqlat -P      # show each PID separately
  tsbpf run runqlat -p 185  # trace PID 185 only
  tsbpf run runqlat -c CG   # trace processes under cgroup CG
`;

/** bpf/runqlat.o of this package: ../../bpf from src/examples/ and from dist/examples/ alike. */
function objectPath(): string {
  const dir = process.env.TSBPF_BPF_DIR;
  if (dir && existsSync(join(dir, 'runqlat.o'))) return join(dir, 'runqlat.o');
  return fileURLToPath(new URL('../../bpf/runqlat.o', import.meta.url));
}

function usageError(msg: string): number {
  process.stderr.write(`runqlat: ${msg}\n\n${USAGE}`);
  return 2;
}

function positiveInt(s: string, what: string): number {
  if (!/^\d+$/.test(s) || Number(s) <= 0 || Number(s) > 0x7fffffff) throw new RangeError(`invalid ${what} "${s}"`);
  return Number(s);
}

/**
 * A log2 histogram as the classic tools print it: slot k counts values 2^k .. 2^(k+1)-1 (slot 0: 0 and 1);
 * rows from the first non-empty slot to the last, a 40-character bar scaled to the largest count.
 */
export function log2Histogram(slots: number[], unit: string): string {
  const first = slots.findIndex((c) => c > 0);
  let last = slots.length - 1;
  while (last >= 0 && slots[last] === 0) last--;
  const lines = [`     ${unit.padEnd(19)} : count    distribution`];
  const max = Math.max(...slots);
  for (let i = first; first >= 0 && i <= last; i++) {
    const low = i === 0 ? 0 : 2 ** i;
    const high = 2 ** (i + 1) - 1;
    const stars = Math.floor((slots[i]! * 40) / max);
    lines.push(`${String(low).padStart(10)} -> ${String(high).padEnd(10)} : ${String(slots[i]).padEnd(8)} |${'*'.repeat(stars)}${' '.repeat(40 - stars)}|`);
  }
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        timestamp: { type: 'boolean', short: 'T' },
        milliseconds: { type: 'boolean', short: 'm' },
        pids: { type: 'boolean', short: 'P' },
        tids: { type: 'boolean', short: 'L' },
        pidnss: { type: 'boolean' },
        pid: { type: 'string', short: 'p' },
        cgroup: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    return usageError((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  let interval: number | undefined;
  let count: number | undefined;
  let pid: number | undefined;
  try {
    if (positionals.length > 2) throw new RangeError(`unexpected argument "${positionals[2]}"`);
    if (positionals[0] !== undefined) interval = positiveInt(positionals[0], 'interval');
    if (positionals[1] !== undefined) count = positiveInt(positionals[1], 'count');
    if (values.pid !== undefined) pid = positiveInt(values.pid, 'PID');
  } catch (e) {
    return usageError((e as Error).message);
  }
  const split = [values.pids && '-P', values.tids && '-L', values.pidnss && '--pidnss'].filter(Boolean);
  if (split.length > 1) return usageError(`only one of ${split.join(', ')} at a time`);

  // 1. The object as plain data: set its `const volatile` globals (they end up in .rodata, frozen at load).
  const spec = loadCollectionSpec(objectPath());
  setVariable(spec, 'targ_per_process', values.pids === true);
  setVariable(spec, 'targ_per_thread', values.tids === true);
  setVariable(spec, 'targ_per_pidns', values.pidnss === true);
  setVariable(spec, 'targ_ms', values.milliseconds === true);
  if (pid !== undefined) setVariable(spec, 'targ_tgid', pid);
  if (values.cgroup !== undefined) setVariable(spec, 'filter_cg', true);
  const unit = values.milliseconds ? 'msecs' : 'usecs';
  const label = values.pids ? 'pid' : values.tids ? 'tid' : values.pidnss ? 'pidns' : undefined;

  // 2. Into the kernel: maps created, programs verified. `using`-style cleanup by hand in `finally`.
  const coll = new Collection(spec);
  const links: Link[] = [];
  let stop = (why: string): void => void why;
  const onSignal = (): void => stop('signal');
  try {
    // The program asks bpf_current_task_under_cgroup(&cgroup_map, 0): store the cgroup's fd at index 0.
    // The map keeps its own reference to the cgroup, so our fd can be closed right away.
    if (values.cgroup !== undefined) {
      const cg = openCgroup(values.cgroup);
      try {
        const fd = Buffer.alloc(4);
        fd.writeUInt32LE(cg.fd.value);
        coll.maps.cgroup_map.update(0, fd);
      } finally {
        cg.fd.close();
      }
    }

    // 3. Attach every program by its section name (raw_tp/sched_wakeup, raw_tp/sched_switch, ...).
    for (const [name, prog] of Object.entries(coll.programs)) links.push(...[autoAttach(prog, spec.programs[name])].flat());

    let broken = false;
    const write = (s: string): void => void (broken || process.stdout.write(s));
    process.stdout.on('error', () => {
      broken = true;
      stop('EPIPE');
    });
    write('Tracing run queue latency... Hit Ctrl-C to end.\n');

    // 4. One summary: every histogram in the map (decoded through BTF into { slots: number[], comm: string }),
    //    printed, then deleted so the next interval starts from zero.
    const hists = coll.maps.hists;
    const printSummary = (): void => {
      let s = '\n';
      if (values.timestamp) s += `${new Date().toTimeString().slice(0, 8).padEnd(8)}\n`;
      const entries = [...hists.decodedEntries()] as [number, { slots: number[]; comm: string }][];
      entries.sort((a, b) => a[0] - b[0]);
      for (const [key, h] of entries) {
        if (label === 'pidns') s += `\npidns = ${key}\n`;
        else if (label) s += `\n${label} = ${key} ${h.comm}\n`;
        s += log2Histogram(Array.from(h.slots, Number), unit) + '\n';
        hists.delete(key);
      }
      write(s);
    };

    // 5. Print every `interval` seconds, `count` times; a signal prints what was gathered since and stops.
    let printed = 0;
    const why = await new Promise<string>((resolve) => {
      const keepAlive = setInterval(() => {}, 1 << 30); // signal handlers alone don't keep Node running
      const tick = interval !== undefined
        ? setInterval(() => {
          printSummary();
          if (count !== undefined && ++printed >= count) stop('count');
        }, interval * 1000)
        : undefined;
      stop = (reason: string): void => {
        clearInterval(keepAlive);
        clearInterval(tick);
        resolve(reason);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    });
    for (const l of links.splice(0)) l.close();
    if (why !== 'count' && why !== 'EPIPE') printSummary();
  } finally {
    for (const l of links) l.close();
    coll.close();
    // Removed only now: a repeated signal (timeout(1) sends two) must not cut the cleanup short.
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const left = ownedFdCount();
  if (left !== 0) {
    process.stderr.write(`runqlat: ${left} fd(s) still open after closing everything\n`);
    return 1;
  }
  return 0;
}
