// `tsbpf run runqslower`: print each task that waited on a CPU run queue longer than a threshold, in the
// classic runqslower's format. An example of the public API only: load the bundled bpf/runqslower.o, set its
// read-only globals, attach its tp_btf programs, read its perf event array without a copy per sample.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Collection, PerfReader, autoAttach, loadCollectionSpec, ownedFdCount, setVariable, waitersIdle,
  type Link,
} from '../index.js';

export const USAGE = `Usage: tsbpf run runqslower [min_us] [-p PID] [-t TID] [-P] [--duration SEC]

Trace scheduler run queue latency: print each task that waited longer than min_us microseconds
(default 10000) between becoming runnable and running on a CPU. Runs until Ctrl-C (SIGINT) or SIGTERM.

The TID column is the thread id of the task that waited (the kernel's task pid; the kernel tree's own
runqslower heads it PID).

Options:
  -p, --pid PID        trace this process (all its threads) only
  -t, --tid TID        trace this thread only
  -P, --previous       also show the task that was running before it (PREV COMM, PREV TID)
  --duration SEC       stop after SEC seconds
  -h, --help           show this help

Examples:
  tsbpf run runqslower           # trace latency higher than 10000 us (default)
  tsbpf run runqslower 1000      # trace latency higher than 1000 us
  tsbpf run runqslower -p 123    # trace pid 123
  tsbpf run runqslower -t 123    # trace tid 123 (use for threads only)
  tsbpf run runqslower -P        # also show previous task name and TID
`;

/**
 * struct event of bpf/runq.h (48 bytes, no padding). The object's BTF does not describe it (clang keeps only
 * types that something global refers to, and the event is a local), so the layout is spelled out here.
 */
const COMM_LEN = 16;
const EV = { task: 0, prevTask: COMM_LEN, deltaUs: 2 * COMM_LEN, pid: 2 * COMM_LEN + 8, prevPid: 2 * COMM_LEN + 12, size: 2 * COMM_LEN + 16 };

/** A NUL-terminated char[COMM_LEN] at `off`. */
function comm(b: Buffer, off: number): string {
  let end = off;
  while (end < off + COMM_LEN && b[end] !== 0) end++;
  return b.toString('utf8', off, end);
}

/** bpf/runqslower.o of this package: ../../bpf from src/examples/ and from dist/examples/ alike. */
function objectPath(): string {
  const dir = process.env.TSBPF_BPF_DIR;
  if (dir && existsSync(join(dir, 'runqslower.o'))) return join(dir, 'runqslower.o');
  return fileURLToPath(new URL('../../bpf/runqslower.o', import.meta.url));
}

function usageError(msg: string): number {
  process.stderr.write(`runqslower: ${msg}\n\n${USAGE}`);
  return 2;
}

function positiveInt(s: string | undefined, what: string): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\d+$/.test(s) || Number(s) <= 0 || Number(s) > 0x7fffffff) throw new RangeError(`invalid ${what} "${s}"`);
  return Number(s);
}

const hhmmss = (): string => new Date().toTimeString().slice(0, 8);

export async function main(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        pid: { type: 'string', short: 'p' },
        tid: { type: 'string', short: 't' },
        previous: { type: 'boolean', short: 'P' },
        duration: { type: 'string' },
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
  if (positionals.length > 1) return usageError(`unexpected argument "${positionals[1]}"`);
  let minUs = 10000n;
  let pid: number | undefined;
  let tid: number | undefined;
  let duration: number | undefined;
  try {
    if (positionals.length === 1) {
      if (!/^\d+$/.test(positionals[0]!)) throw new RangeError(`invalid min_us "${positionals[0]}"`);
      minUs = BigInt(positionals[0]!);
      if (minUs >= 1n << 64n) throw new RangeError(`invalid min_us "${positionals[0]}"`);
    }
    pid = positiveInt(values.pid, 'PID');
    tid = positiveInt(values.tid, 'TID');
    if (values.duration !== undefined) {
      duration = Number(values.duration);
      if (!(Number.isFinite(duration) && duration > 0)) throw new RangeError(`invalid duration "${values.duration}"`);
    }
  } catch (e) {
    return usageError((e as Error).message);
  }
  const showPrev = values.previous === true;

  const spec = loadCollectionSpec(objectPath());
  setVariable(spec, 'min_us', minUs);
  if (pid !== undefined) setVariable(spec, 'targ_tgid', pid); // a process: its thread group id
  if (tid !== undefined) setVariable(spec, 'targ_pid', tid); // a thread: the kernel's task pid

  let stop = (): void => {};
  const onSignal = (): void => stop();
  try {
    return await trace();
  } finally {
    // Removed only now: a repeated signal (timeout(1) sends two) must not cut the cleanup short.
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  async function trace(): Promise<number> {
    const coll = new Collection(spec);
    const links: Link[] = [];
    let reader: PerfReader | undefined;
    try {
      // 64 pages (256 KiB) per CPU: room for a burst of events while we print.
      reader = new PerfReader(coll.maps.events, { pagesPerCpu: 64 });
      for (const [name, prog] of Object.entries(coll.programs)) links.push(...[autoAttach(prog, spec.programs[name])].flat());

      // `| head` closes the pipe: stop like on Ctrl-C, and write nothing more.
      let broken = false;
      const out = { write: (s: string) => void (broken || process.stdout.write(s)) };
      process.stdout.on('error', () => {
        broken = true;
        stop();
      });
      out.write(`Tracing run queue latency higher than ${minUs} us\n`);
      out.write(
        ['TIME'.padEnd(8), 'COMM'.padEnd(16), 'TID'.padEnd(6), 'LAT(us)'.padStart(14), ...(showPrev ? ['PREV COMM'.padEnd(16), 'PREV TID'] : [])].join(' ') + '\n',
      );

      const lines: string[] = [];
      const lostSeen: Record<number, number> = {};
      let lostTotal = 0;
      const drain = (r: PerfReader): number => {
        const time = hhmmss();
        const n = r.readInPlace((data, offset, length) => {
          if (length < EV.size) return;
          const task = comm(data, offset + EV.task);
          const tid = data.readInt32LE(offset + EV.pid);
          const lat = data.readBigUInt64LE(offset + EV.deltaUs);
          let line = `${time} ${task.padEnd(16)} ${String(tid).padEnd(6)} ${String(lat).padStart(14)}`;
          if (showPrev) line += ` ${comm(data, offset + EV.prevTask).padEnd(16)} ${data.readInt32LE(offset + EV.prevPid)}`;
          lines.push(line);
        });
        if (lines.length) {
          out.write(lines.join('\n') + '\n');
          lines.length = 0;
        }
        if (r.lost !== lostTotal) {
          lostTotal = r.lost;
          for (const [cpu, c] of Object.entries(r.lostPerCpu)) {
            const d = c - (lostSeen[Number(cpu)] ?? 0);
            if (d > 0) process.stderr.write(`lost ${d} events on CPU ${cpu}\n`);
            lostSeen[Number(cpu)] = c;
          }
        }
        return n;
      };

      // Wait for samples without blocking Node; close() (on a signal or the timer) resolves a pending wait.
      const r = reader;
      const stopped = new Promise<void>((resolve) => {
        stop = (): void => {
          clearTimeout(timer);
          clearInterval(keepAlive);
          resolve();
        };
        const timer = duration !== undefined ? setTimeout(stop, duration * 1000) : undefined;
        // Signal handlers alone don't keep the event loop alive.
        const keepAlive = setInterval(() => {}, 1 << 30);
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      const loop = (async () => {
        while (!r.closed) {
          drain(r);
          if (r.closed) break;
          await r.wait();
        }
      })();
      let failure: unknown;
      await Promise.race([stopped, loop.catch((e: unknown) => void (failure = e))]);
      stop();
      // Detach, print what is left, then close the reader: the loop's pending wait resolves.
      for (const l of links.splice(0)) l.close();
      if (!r.closed && failure === undefined) drain(r);
      r.close();
      await loop.catch(() => {});
      if (failure !== undefined) throw failure;
    } finally {
      for (const l of links) l.close();
      reader?.close();
      coll.close();
    }
    await waitersIdle();
    const left = ownedFdCount();
    if (left !== 0) {
      process.stderr.write(`runqslower: ${left} fd(s) still open after closing everything\n`);
      return 1;
    }
    return 0;
  }
}
