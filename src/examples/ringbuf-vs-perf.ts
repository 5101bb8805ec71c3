// `tsbpf run ringbuf-vs-perf`: the same events through a BPF ring buffer and a perf event array, side by
// side. An example of the public API only: load bpf/rb_vs_perf.o (one tracepoint program writing each
// record to both), attach it, produce events from JS (every read of process.ppid is a getppid() syscall),
// and read both transports with one wait loop each, in place (no copy per record). Prints how many records
// each delivered, how many were lost, and how long they took from the kernel to JS.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  Collection, PerfReader, RingBufReader, autoAttach, loadCollectionSpec, ownedFdCount, setVariable, waitersIdle,
  type Link,
} from '../index.js';

export const USAGE = `Usage: tsbpf run ringbuf-vs-perf [-n EVENTS] [-b BURST]

Produce EVENTS getppid() syscalls from this process, in bursts of BURST, while bpf/rb_vs_perf.o writes a
record for each to a ring buffer and to a perf event array. Prints, per transport: records received, records
lost, and the delivery latency (kernel bpf_ktime_get_ns() to JS process.hrtime, both CLOCK_MONOTONIC).

Options:
  -n, --events N       events to produce (default 20000)
  -b, --burst N        syscalls per burst before letting the readers run (default 200)
  -h, --help           show this help
`;

/** struct event of bpf/rb_vs_perf.c: u64 ts_ns, u64 seq, u32 cpu, u32 tid (24 bytes). */
const EV = { ts: 0, seq: 8, cpu: 16, size: 24 };

function objectPath(): string {
  const dir = process.env.TSBPF_BPF_DIR;
  if (dir && existsSync(join(dir, 'rb_vs_perf.o'))) return join(dir, 'rb_vs_perf.o');
  return fileURLToPath(new URL('../../bpf/rb_vs_perf.o', import.meta.url));
}

function usageError(msg: string): number {
  process.stderr.write(`ringbuf-vs-perf: ${msg}\n\n${USAGE}`);
  return 2;
}

/** What one transport delivered. */
class Tally {
  received = 0;
  /** Latencies in ns, one per record. */
  readonly latency: number[] = [];
  readonly cpus = new Set<number>();
  /** Records whose seq did not follow the previous one's (ring buffer: global order; perf: per CPU). */
  outOfOrder = 0;
  readonly #lastSeq = new Map<number, bigint>();

  record(data: Buffer, offset: number, length: number, now: bigint, perCpuOrder: boolean): void {
    if (length < EV.size) return;
    this.received++;
    this.latency.push(Number(now - data.readBigUInt64LE(offset + EV.ts)));
    const cpu = data.readUInt32LE(offset + EV.cpu);
    this.cpus.add(cpu);
    const seq = data.readBigUInt64LE(offset + EV.seq);
    const k = perCpuOrder ? cpu : -1;
    const last = this.#lastSeq.get(k);
    if (last !== undefined && seq <= last) this.outOfOrder++;
    this.#lastSeq.set(k, seq);
  }

  percentile(p: number): number {
    if (this.latency.length === 0) return NaN;
    const s = Float64Array.from(this.latency).sort();
    return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
  }
}

const us = (ns: number): string => (Number.isNaN(ns) ? '-' : `${(ns / 1000).toFixed(1)} us`);

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        events: { type: 'string', short: 'n' },
        burst: { type: 'string', short: 'b' },
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
  const total = Number(values.events ?? 20000);
  const burst = Number(values.burst ?? 200);
  if (!Number.isInteger(total) || total <= 0 || total > 10_000_000) return usageError(`invalid event count "${values.events}"`);
  if (!Number.isInteger(burst) || burst <= 0) return usageError(`invalid burst "${values.burst}"`);

  const spec = loadCollectionSpec(objectPath());
  setVariable(spec, 'targ_tgid', process.pid); // only our own getppid() calls

  const coll = new Collection(spec);
  const links: Link[] = [];
  let ring: RingBufReader | undefined;
  let perf: PerfReader | undefined;
  let rbTally = new Tally();
  let perfTally = new Tally();
  let produceNs = 0n;
  try {
    // Readers before attaching, so no record is produced into a ring nobody maps yet. The perf event array
    // gets one ring per CPU (64 data pages each); the ring buffer is one 1 MiB buffer for all CPUs.
    ring = new RingBufReader(coll.maps.rb);
    perf = new PerfReader(coll.maps.perf, { pagesPerCpu: 64 });
    for (const [name, prog] of Object.entries(coll.programs)) links.push(...[autoAttach(prog, spec.programs[name])].flat());

    // One loop per reader: drain what is there (in place: `data` is the ring's memory, valid during the
    // callback only), then wait (in a shared worker thread, not blocking Node) until more arrives or close().
    const r = ring;
    const p = perf;
    const ringLoop = (async () => {
      while (!r.closed) {
        const now = process.hrtime.bigint();
        r.readInPlace((data, offset, length) => rbTally.record(data, offset, length, now, false));
        if (!r.closed) await r.wait();
      }
    })();
    const perfLoop = (async () => {
      while (!p.closed) {
        const now = process.hrtime.bigint();
        p.readInPlace((data, offset, length) => perfTally.record(data, offset, length, now, true));
        if (!p.closed) await p.wait();
      }
    })();

    // Warm up: the first wait starts the shared waiter thread, which takes a while on a busy machine. One
    // event through each transport first, then the counts start from zero.
    const warmUntil = Date.now() + 20_000;
    while ((rbTally.received === 0 || perfTally.received === 0) && Date.now() < warmUntil) {
      void process.ppid;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    rbTally = new Tally();
    perfTally = new Tally();
    const lostBefore = p.lost;

    // Produce: bursts of getppid() syscalls, yielding to the event loop between bursts so the readers'
    // wakeups are handled while events keep coming.
    const t0 = process.hrtime.bigint();
    let sink = 0;
    for (let done = 0; done < total; done += burst) {
      for (let i = 0; i < Math.min(burst, total - done); i++) sink ^= process.ppid;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    produceNs = process.hrtime.bigint() - t0;
    void sink;

    // Detach, then give the readers a moment to catch up with what is still in the rings.
    for (const l of links.splice(0)) l.close();
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && (rbTally.received < total || perfTally.received + p.lost - lostBefore < total)) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    r.close();
    p.close();
    await Promise.all([ringLoop, perfLoop]);

    // Records the program could not write (ring full): counted by the program in the `dropped` array.
    // (Warm-up events cannot have been dropped: the rings were empty.)
    const dropped = (i: number): bigint => coll.maps.dropped.get(i) as bigint;
    const rows = [
      ['TRANSPORT', 'RECEIVED', 'LOST', 'CPUS', 'REORDERED', 'P50', 'P99', 'MAX'],
      ['ringbuf', String(rbTally.received), String(dropped(0)), String(rbTally.cpus.size), String(rbTally.outOfOrder),
        us(rbTally.percentile(50)), us(rbTally.percentile(99)), us(rbTally.percentile(100))],
      ['perf', String(perfTally.received), `${p.lost - lostBefore + Number(dropped(1))}`, String(perfTally.cpus.size), String(perfTally.outOfOrder),
        us(perfTally.percentile(50)), us(perfTally.percentile(99)), us(perfTally.percentile(100))],
    ];
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
    const line = (row: string[]): string => row.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
    process.stdout.write(`Produced ${total} getppid() events in bursts of ${burst}, in ${(Number(produceNs) / 1e6).toFixed(1)} ms\n\n`);
    process.stdout.write(rows.map(line).join('\n') + '\n\n');
    process.stdout.write('RECEIVED: records read; LOST: not delivered (full ring); REORDERED: sequence went backwards\n' +
      '(ring buffer: one order for all CPUs; perf: per CPU); latency from bpf_ktime_get_ns() to the drain in JS\n');
  } finally {
    for (const l of links) l.close();
    ring?.close();
    perf?.close();
    coll.close();
  }
  await waitersIdle();
  return ownedFdCount() === 0 ? 0 : 1;
}
