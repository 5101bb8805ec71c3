// Ring buffer and perf buffer drain benchmark: one BPF_PROG_TEST_RUN of bpf/bench_rings.o prefills a ring
// with N fixed-size records (bpf_loop + bpf_ringbuf_output into a 64 MiB RINGBUF, or bpf_perf_event_output
// into a PERF_EVENT_ARRAY), then the drain is timed: tsbpf's RingBufReader / PerfReader (src/ringbuf/) against
// libbpf's ring_buffer__consume / perf_buffer__consume (bench/rings_ref.c, compiled now into a temporary
// directory), in the same run. Figures are ns per record; ratios are tsbpf/libbpf. Performance targets live
// here, never in timed tests.
//
//   npm run bench:rings               (as root; about a minute)
//   npm run bench:rings -- --quick    (a tenth of the records, one block, one round: a smoke test)
//
// tsbpf drains four ways: nextBatch() (record positions in a reusable RecordBatch: no allocation and no
// call per record), readInPlace() (a callback per record over one Buffer per ring, no per-record
// allocation), read() with views, read(..., { copy: true }). Every callback, on both sides, reads the record's u64 sequence number (its first
// 8 bytes) and checks it is the previous one + 1, and a drain must deliver all N records. Bytes allocated on
// the JS heap per record are measured for each tsbpf path in an extra, untimed drain (v8.GCProfiler: the
// heap growth plus what every GC inside the window freed). Each drain is timed by the wall clock and by the
// process's CPU time (user + system: on a busy machine, preemption inflates only the former).
//
// The two sides run in alternating blocks (tsbpf, libbpf | libbpf, tsbpf | ...). Writes
// bench/results/rings.json. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import v8 from 'node:v8';
import { Collection, loadCollectionSpec, PerfReader, RecordBatch, RingBufReader } from '../src/index.js';
import { onlineCpus } from '../src/syscall/index.js';
import { BENCH_DIR, BenchFailure, compileLibbpfReference, fail, median } from './common.js';

const OBJECT = join(BENCH_DIR, '..', 'bpf', 'bench_rings.o');
const RING_BYTES = 64 * 1024 * 1024; // max_entries of `rb` in bpf/bench_rings.c
const BPF_F_TEST_RUN_ON_CPU = 1;
const PAGE = 4096;

const quick = process.argv.includes('--quick');
const SIZES = [16, 64, 256, 1024] as const;
type Size = (typeof SIZES)[number];
/** Records per prefill: at most ~50 MB of ring per size (a ringbuf record takes size + 8 bytes, a perf sample size + 16). */
const FULL_COUNTS: Record<Size, number> = { 16: 1_000_000, 64: 500_000, 256: 160_000, 1024: 48_000 };
const CONFIG = {
  sizes: SIZES,
  counts: Object.fromEntries(SIZES.map((s) => [s, quick ? FULL_COUNTS[s] / 10 : FULL_COUNTS[s]])) as Record<Size, number>,
  /** The CPU the perf prefill runs on (BPF_F_TEST_RUN_ON_CPU); both readers read every online CPU. */
  perfCpu: 0,
  /** Data pages per CPU of the perf rings (both sides): a power of two that holds a whole prefill. */
  pagesPerCpu: 0,
  /** blocks per side, alternating tsbpf and libbpf */
  blocks: quick ? 1 : 2,
  /** recorded rounds per block and measurement (after one unrecorded warm-up); a figure is the median of all */
  rounds: quick ? 1 : 3,
};
{
  let need = 0;
  for (const s of SIZES) {
    const n = CONFIG.counts[s];
    if (n * (s + 8) > RING_BYTES) throw new Error(`bench:rings: ${n} records of ${s} bytes do not fit the ring`);
    need = Math.max(need, n * (((s + 4 + 7) & ~7) + 8)); // perf: header 8, u32 raw size + data padded to 8
  }
  let pages = 1;
  while (pages * PAGE < need * 1.05) pages *= 2;
  CONFIG.pagesPerCpu = pages;
}

type Kind = 'ringbuf' | 'perf';
type Mode = 'batch' | 'inplace' | 'view' | 'copy';
const KINDS: Kind[] = ['ringbuf', 'perf'];
const MODES: Mode[] = ['batch', 'inplace', 'view', 'copy'];
/** ns/record samples by size (as a string key, like the reference's JSON). */
type BySize = Record<string, number[]>;
type TsSamples = Record<Kind, Record<Mode, BySize>>;
type RefSamples = Record<Kind, BySize>;
/** Wall-clock and CPU-time (the whole process's, user + system) samples. */
interface Timed<T> {
  wall: T;
  cpu: T;
}

// ---------------------------------------------------------------------------------------------
// libbpf reference

function runReference(bin: string): { reference: string; lost: number; samples: Timed<RefSamples> } {
  const args = [OBJECT, CONFIG.perfCpu, CONFIG.pagesPerCpu, CONFIG.rounds, ...SIZES.map((s) => `${s}:${CONFIG.counts[s]}`)].map(String);
  const r = spawnSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.error) fail(`running the libbpf reference: ${r.error.message}`);
  if (r.status !== 0) fail(`the libbpf reference exited with ${r.status ?? r.signal}`);
  try {
    const j = JSON.parse(r.stdout) as { reference: string; lost: number } & Record<'ringbuf' | 'perf' | 'ringbuf_cpu' | 'perf_cpu', BySize>;
    return {
      reference: j.reference,
      lost: j.lost,
      samples: { wall: { ringbuf: j.ringbuf, perf: j.perf }, cpu: { ringbuf: j.ringbuf_cpu, perf: j.perf_cpu } },
    };
  } catch {
    fail(`the libbpf reference printed something that is not JSON:\n${r.stdout}`);
  }
}

// ---------------------------------------------------------------------------------------------
// tsbpf

// What the callbacks check: module-level, so the callbacks are created once and allocate nothing.
let nextSeq = 0;
let seen = 0;
let bad = 0;

function touch(seq: number): void {
  if (seq !== nextSeq) bad++;
  nextSeq = seq + 1;
  seen++;
}
// The u64 seq from its 8 bytes, by indexing: Buffer#readUInt32LE costs ~15 ns a call on Node 20 (not inlined),
// which would bury the readers' own per-record cost under the callback's; C reads it with a memcpy.
function seqAt(d: Buffer, o: number): number {
  const lo = (d[o]! | (d[o + 1]! << 8) | (d[o + 2]! << 16) | (d[o + 3]! << 24)) >>> 0;
  const hi = (d[o + 4]! | (d[o + 5]! << 8) | (d[o + 6]! << 16) | (d[o + 7]! << 24)) >>> 0;
  return hi * 0x1_0000_0000 + lo;
}
const onInPlace = (data: Buffer, off: number, len: number): void => touch(len >= 8 ? seqAt(data, off) : -1);
const onRecord = (rec: Buffer): void => touch(rec.length >= 8 ? seqAt(rec, 0) : -1);

interface Rig {
  coll: Collection;
  rb: RingBufReader;
  perf: PerfReader;
  seqBase: number;
  lost: number;
}

function openRig(): Rig {
  const coll = new Collection(loadCollectionSpec(OBJECT));
  try {
    const rb = new RingBufReader(coll.maps.rb!);
    const perf = new PerfReader(coll.maps.events!, { pagesPerCpu: CONFIG.pagesPerCpu });
    return { coll, rb, perf, seqBase: 0, lost: 0 };
  } catch (e) {
    coll.close();
    throw e;
  }
}

function prefill(rig: Rig, kind: Kind, size: number, n: number): void {
  const dropped = rig.coll.variables.dropped!.value as bigint;
  const r =
    kind === 'ringbuf'
      ? rig.coll.programs.fill_rb!.run({ ctx: ctxOf([n, size], rig.seqBase, 8) })
      : rig.coll.programs.fill_perf!.run({ ctx: ctxOf([n, size], rig.seqBase, 16), flags: BPF_F_TEST_RUN_ON_CPU, cpu: CONFIG.perfCpu });
  if (r.retval !== 0) fail(`${kind} prefill: the program returned ${r.retval} (size ${size})`);
  const now = rig.coll.variables.dropped!.value as bigint;
  if (now !== dropped) fail(`${kind} prefill: ${now - dropped} records did not fit the ring`);
}

/** fill_rb's ctx is { u32 n, u32 size, u64 base }; fill_perf's is u64 args[3] = { n, size, base }. */
function ctxOf([n, size]: [number, number], base: number, baseAt: number): Buffer {
  const b = Buffer.alloc(baseAt + 8);
  if (baseAt === 8) {
    b.writeUInt32LE(n, 0);
    b.writeUInt32LE(size, 4);
  } else {
    b.writeUInt32LE(n, 0);
    b.writeUInt32LE(size, 8);
  }
  b.writeBigUInt64LE(BigInt(base), baseAt);
  return b;
}

const BATCH = new RecordBatch(4096);

function drain(rig: Rig, kind: Kind, mode: Mode): number {
  const reader = kind === 'ringbuf' ? rig.rb : rig.perf;
  if (mode === 'batch') {
    let total = 0;
    for (let n = reader.nextBatch(BATCH); n > 0; n = reader.nextBatch(BATCH)) {
      const { data, offsets, lengths } = BATCH;
      for (let i = 0; i < n; i++) touch(lengths[i]! >= 8 ? seqAt(data, offsets[i]!) : -1);
      total += n;
    }
    return total;
  }
  if (mode === 'inplace') return reader.readInPlace(onInPlace);
  return reader.read(onRecord, { copy: mode === 'copy' });
}

const gc = (globalThis as { gc?: () => void }).gc;

/**
 * One round: prefill, collect the garbage of earlier rounds (so no round pays for another's), let the waiter
 * thread's wakeups settle, then drain (timed); returns ns/record, wall-clock and CPU time.
 */
async function round(rig: Rig, kind: Kind, mode: Mode, size: number, n: number, alloc?: number[]): Promise<{ wall: number; cpu: number }> {
  prefill(rig, kind, size, n);
  gc?.();
  await sleep(2);
  nextSeq = rig.seqBase;
  seen = 0;
  bad = 0;
  const lost0 = rig.perf.lost;
  let ns: number;
  let cpuNs = 0;
  if (alloc) {
    // Untimed: bytes allocated on the JS heap during the drain.
    const prof = new v8.GCProfiler();
    prof.start();
    const h0 = v8.getHeapStatistics().used_heap_size;
    drain(rig, kind, mode);
    const h1 = v8.getHeapStatistics().used_heap_size;
    const stats = prof.stop();
    let freed = 0;
    for (const g of stats.statistics) freed += g.beforeGC.heapStatistics.usedHeapSize - g.afterGC.heapStatistics.usedHeapSize;
    alloc.push(Math.max(0, h1 - h0 + freed) / n);
    ns = 0;
  } else {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    drain(rig, kind, mode);
    ns = Number(process.hrtime.bigint() - t0) / n;
    const c = process.cpuUsage(c0);
    cpuNs = ((c.user + c.system) * 1000) / n;
  }
  const lost = rig.perf.lost - lost0;
  rig.lost += lost;
  if (seen !== n || bad !== 0 || lost !== 0) {
    fail(`tsbpf ${kind} ${mode} ${size} B: ${seen} records (expected ${n}), ${bad} out of sequence, ${lost} lost`);
  }
  rig.seqBase += n;
  return { wall: ns, cpu: cpuNs };
}

const emptyBySize = (): BySize => Object.fromEntries(SIZES.map((s) => [String(s), [] as number[]]));
const emptyTs = (): TsSamples =>
  Object.fromEntries(KINDS.map((k) => [k, Object.fromEntries(MODES.map((m) => [m, emptyBySize()]))])) as TsSamples;

async function measureTsbpf(rig: Rig, alloc: TsSamples): Promise<Timed<TsSamples>> {
  const out = { wall: emptyTs(), cpu: emptyTs() };
  for (const size of SIZES) {
    const n = CONFIG.counts[size];
    for (const kind of KINDS) {
      for (const mode of MODES) await round(rig, kind, mode, size, n); // warm-up
      for (let r = 0; r < CONFIG.rounds; r++) {
        for (const mode of MODES) {
          const t = await round(rig, kind, mode, size, n);
          out.wall[kind][mode][String(size)]!.push(Math.round(t.wall * 100) / 100);
          out.cpu[kind][mode][String(size)]!.push(Math.round(t.cpu * 100) / 100);
        }
      }
      for (const mode of MODES) await round(rig, kind, mode, size, n, alloc[kind][mode][String(size)]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function fmtNs(ns: number): string {
  return ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(1)} ns`;
}

function table(head: string[], body: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('   '));
  for (const b of body) console.log(line(b));
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) console.error('bench:rings: not root; loading the BPF object will likely fail (run as root)');
  if (!onlineCpus().includes(CONFIG.perfCpu)) fail(`CPU ${CONFIG.perfCpu} is offline`);
  if (typeof gc !== 'function') {
    console.error('bench:rings: no gc() (node --expose-gc): rounds may pay for earlier rounds\' garbage');
  }
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-bench-rings-'));
  const ts: Timed<TsSamples>[] = [];
  const ref: Timed<RefSamples>[] = [];
  const alloc = emptyTs();
  let reference = 'libbpf';
  let refLost = 0;
  const started = new Date();
  const load0 = loadavg()[0]!;
  const rig = openRig();
  try {
    const bin = compileLibbpfReference('rings_ref.c', dir);
    console.error(
      `bench:rings: sizes ${SIZES.join('/')} B, ${SIZES.map((s) => CONFIG.counts[s]).join('/')} records per prefill, ` +
        `${CONFIG.pagesPerCpu} perf pages per CPU, ${CONFIG.blocks} block(s) per side, ${CONFIG.rounds} round(s) each (+ warm-up)`,
    );
    const runTs = async (): Promise<void> => void ts.push(await measureTsbpf(rig, alloc));
    const runRef = async (): Promise<void> => {
      const r = runReference(bin);
      reference = r.reference;
      refLost += r.lost;
      ref.push(r.samples);
    };
    for (let b = 0; b < CONFIG.blocks; b++) {
      for (const f of b % 2 === 0 ? [runTs, runRef] : [runRef, runTs]) await f();
      process.stderr.write(`bench:rings: block ${b + 1}/${CONFIG.blocks} done\n`);
    }
  } finally {
    rig.perf.close();
    rig.rb.close();
    rig.coll.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const med = (v: number[]): number => Math.round(median(v) * 100) / 100;
  const ratio = (a: number, b: number): number => Math.round((a / b) * 100) / 100;
  const figures = (clock: 'wall' | 'cpu') =>
    KINDS.flatMap((kind) =>
      SIZES.map((size) => {
        const k = String(size);
        const libbpf_ns = med(ref.flatMap((r) => r[clock][kind][k]!));
        const m = Object.fromEntries(MODES.map((mode) => [mode, med(ts.flatMap((t) => t[clock][kind][mode][k]!))])) as Record<Mode, number>;
        const bytes = Object.fromEntries(MODES.map((mode) => [mode, Math.round(median(alloc[kind][mode][k]!) * 100) / 100])) as Record<Mode, number>;
        return {
          kind,
          size,
          records: CONFIG.counts[size],
          libbpf_ns,
          tsbpf_ns: m,
          ratio: Object.fromEntries(MODES.map((mode) => [mode, ratio(m[mode], libbpf_ns)])) as Record<Mode, number>,
          heap_bytes_per_record: bytes,
        };
      }),
    );
  const rows = figures('wall');
  const cpuRows = figures('cpu');
  const worstBatch = Math.max(...rows.map((r) => r.ratio.batch));
  const worstInPlace = Math.max(...rows.map((r) => r.ratio.inplace));
  const worstView = Math.max(...rows.map((r) => r.ratio.view));
  const maxAlloc = Math.max(...rows.map((r) => Math.max(r.heap_bytes_per_record.batch, r.heap_bytes_per_record.inplace)));
  const target = {
    description: 'tsbpf zero-copy drain (nextBatch) within 2x of libbpf per record, no allocation per record on the batch and in-place paths',
    worst_batch_ratio: worstBatch,
    worst_inplace_ratio: worstInPlace,
    worst_view_ratio: worstView,
    max_zero_alloc_heap_bytes_per_record: maxAlloc,
    holds: worstBatch <= 2 && maxAlloc < 1,
  };

  const host = { node: process.version, kernel: release(), cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length, loadavg: [load0, loadavg()[0]] };
  console.log(
    `\ntsbpf vs ${reference}: drain of one prefill, ns per record, median of ${CONFIG.blocks * CONFIG.rounds} round(s) per side ` +
      `(node ${host.node}, kernel ${host.kernel}, ${host.cpus} CPUs, load ${load0.toFixed(1)})${quick ? ' [--quick]' : ''}\n`,
  );
  table(
    ['reader', 'size', 'records', 'batch', 'in-place', 'view', 'copy', 'libbpf', 'batch÷', 'in-place÷', 'view÷', 'copy÷', 'heap B/rec batch', 'in-place', 'view', 'copy'],
    rows.map((r) => [
      r.kind,
      `${r.size} B`,
      String(r.records),
      fmtNs(r.tsbpf_ns.batch),
      fmtNs(r.tsbpf_ns.inplace),
      fmtNs(r.tsbpf_ns.view),
      fmtNs(r.tsbpf_ns.copy),
      fmtNs(r.libbpf_ns),
      `${r.ratio.batch.toFixed(2)}×`,
      `${r.ratio.inplace.toFixed(2)}×`,
      `${r.ratio.view.toFixed(2)}×`,
      `${r.ratio.copy.toFixed(2)}×`,
      r.heap_bytes_per_record.batch.toFixed(2),
      r.heap_bytes_per_record.inplace.toFixed(2),
      r.heap_bytes_per_record.view.toFixed(1),
      r.heap_bytes_per_record.copy.toFixed(1),
    ]),
  );
  console.log(`\nthe same drains in CPU time of the process (user + system; not inflated by preemption on a busy machine):\n`);
  table(
    ['reader', 'size', 'batch', 'in-place', 'view', 'copy', 'libbpf', 'batch÷', 'in-place÷', 'view÷', 'copy÷'],
    cpuRows.map((r) => [
      r.kind,
      `${r.size} B`,
      fmtNs(r.tsbpf_ns.batch),
      fmtNs(r.tsbpf_ns.inplace),
      fmtNs(r.tsbpf_ns.view),
      fmtNs(r.tsbpf_ns.copy),
      fmtNs(r.libbpf_ns),
      `${r.ratio.batch.toFixed(2)}×`,
      `${r.ratio.inplace.toFixed(2)}×`,
      `${r.ratio.view.toFixed(2)}×`,
      `${r.ratio.copy.toFixed(2)}×`,
    ]),
  );
  console.log('\nratio (÷) = tsbpf / libbpf (lower is better; 1.00× = as fast as libbpf); libbpf = ring_buffer__consume / perf_buffer__consume');
  console.log(`perf: ${CONFIG.pagesPerCpu} pages per CPU, prefill on CPU ${CONFIG.perfCpu}; lost samples: tsbpf ${rig.lost}, libbpf ${refLost}`);
  console.log(
    `target: zero-copy batch drain within 2× of libbpf (worst ${worstBatch.toFixed(2)}×; per-record callback in place: worst ` +
      `${worstInPlace.toFixed(2)}×), no allocation per record on those paths ` +
      `(worst ${maxAlloc.toFixed(2)} B/record): ${target.holds ? 'holds' : 'DOES NOT hold'}`,
  );

  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'rings.json');
  writeFileSync(
    file,
    JSON.stringify(
      {
        date: started.toISOString(),
        host,
        reference,
        config: { ...CONFIG, quick },
        results: rows,
        results_cpu_time: cpuRows.map(({ heap_bytes_per_record: _, ...r }) => r),
        target,
        lost: { tsbpf: rig.lost, libbpf: refLost },
        samples: { tsbpf: ts, libbpf: ref, tsbpf_heap_bytes_per_record: alloc },
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`wrote ${relative(process.cwd(), file)}`);
}

try {
  await main();
} catch (e) {
  if (!(e instanceof BenchFailure)) throw e;
  console.error(`bench:rings: ${e.message}`);
  process.exitCode = 1;
}
