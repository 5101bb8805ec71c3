// tsbpf benchmark: the same four measurements through tsbpf's public API and through
// libbpf (bench/ref.c, compiled now into a temporary directory), in the same run,
// reported as ratios tsbpf/libbpf. Performance targets live here, never in timed tests.
//
//   npm run bench               (as root; well under a minute)
//   npm run bench -- --quick    (a tenth of the work: a smoke test, figures are noisier)
//
// Both sides run in alternating blocks (tsbpf, libbpf, libbpf, tsbpf, ...) so that a change in
// machine load during the run weighs on both; each figure is the median over all recorded rounds.
//
// Writes bench/results/latest.json. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Collection, loadCollectionSpec } from '../src/index.js';
import { BenchFailure, compileLibbpfReference, fail, median } from './common.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH_DIR, '..');
const OBJECT = join(ROOT, 'bpf', 'loader.o');
const MAP = 'slots'; // ARRAY, u32 -> u64, 8 entries
const PROGRAM = 'xdp_count'; // xdp; writes the packet length to slots[0], returns XDP_PASS
const PACKET_SIZE = 64;
const XDP_PASS = 2;

const quick = process.argv.includes('--quick');
const scale = quick ? 0.1 : 1;
const CONFIG = {
  object: relative(ROOT, OBJECT),
  map: MAP,
  program: PROGRAM,
  packetSize: PACKET_SIZE,
  /** open+load+close iterations per round */
  loadIters: Math.max(2, Math.round(20 * scale)),
  /** lookups, and updates, per round */
  opIters: Math.max(100, Math.round(40_000 * scale)),
  /** test runs per round */
  runIters: Math.max(100, Math.round(40_000 * scale)),
  /** blocks per side, alternating tsbpf and libbpf */
  blocks: quick ? 1 : 4,
  /** recorded rounds per measurement and block; the median of all blocks' rounds is reported */
  rounds: 3,
  /** unrecorded rounds before those, in every block */
  warmupRounds: 1,
};

type Op = 'open_load_close' | 'lookup' | 'update' | 'test_run';
const OPS: { op: Op; label: string }[] = [
  { op: 'open_load_close', label: 'open+load+close loader.o' },
  { op: 'lookup', label: 'map lookup (array u32→u64)' },
  { op: 'update', label: 'map update (array u32→u64)' },
  { op: 'test_run', label: `prog test run (xdp, ${PACKET_SIZE} B)` },
];

/** One block: ns/op of each recorded round. */
interface Measurement {
  samples: Record<Op, number[]>;
}



// ---------------------------------------------------------------------------------------------
// The libbpf reference


function runReference(bin: string): Measurement & { reference: string } {
  // ref.c also prints its own per-block medians (ns_per_op); the pooled samples are what count.
  const args = [
    OBJECT,
    MAP,
    PROGRAM,
    CONFIG.loadIters,
    CONFIG.opIters,
    CONFIG.runIters,
    CONFIG.rounds,
    CONFIG.warmupRounds,
  ].map(String);
  const r = spawnSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.error) fail(`running the libbpf reference: ${r.error.message}`);
  if (r.status !== 0) fail(`the libbpf reference exited with ${r.status ?? r.signal}`);
  try {
    return JSON.parse(r.stdout) as Measurement & { reference: string };
  } catch {
    fail(`the libbpf reference printed something that is not JSON:\n${r.stdout}`);
  }
}

// ---------------------------------------------------------------------------------------------
// tsbpf

const now = (): bigint => process.hrtime.bigint();

/** Warm up, then time `rounds` rounds of `iters` operations; ns/op of each round. */
function measure(iters: number, round: (n: number) => void): number[] {
  for (let r = 0; r < CONFIG.warmupRounds; r++) round(iters);
  const samples: number[] = [];
  for (let r = 0; r < CONFIG.rounds; r++) {
    const t0 = now();
    round(iters);
    samples.push(Math.round((Number(now() - t0) / iters) * 10) / 10);
  }
  return samples;
}


/** Keeps results observable. */
export let sink = 0;

function measureTsbpf(): Measurement {
  const results = {} as Record<Op, number[]>;

  results.open_load_close = measure(CONFIG.loadIters, (n) => {
    for (let i = 0; i < n; i++) new Collection(loadCollectionSpec(OBJECT)).close();
  });

  const coll = new Collection(loadCollectionSpec(OBJECT));
  try {
    const map = coll.maps[MAP];
    const prog = coll.programs[PROGRAM];
    if (!map || map.keySize !== 4 || map.valueSize !== 8) fail(`map ${MAP} is missing or not u32 -> u64`);
    if (!prog) fail(`program ${PROGRAM} is missing`);
    const value = Buffer.alloc(8);
    const packet = Buffer.alloc(PACKET_SIZE);
    const check = prog.run({ data: packet });
    if (check.retval !== XDP_PASS) fail(`${PROGRAM} returned ${check.retval}, expected XDP_PASS`);

    results.lookup = measure(CONFIG.opIters, (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const v = map.lookup(i & 7);
        if (v === undefined) fail(`lookup of ${i & 7} in ${MAP} found nothing`);
        acc += v[0];
      }
      sink += acc;
    });

    results.update = measure(CONFIG.opIters, (n) => {
      for (let i = 0; i < n; i++) {
        value.writeUInt32LE(i >>> 0, 0); // same as ref.c: the value is the iteration number
        map.update(i & 7, value);
      }
    });

    results.test_run = measure(CONFIG.runIters, (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += prog.run({ data: packet }).retval;
      sink += acc;
    });
  } finally {
    coll.close();
  }

  return { samples: results };
}

// ---------------------------------------------------------------------------------------------

function fmtNs(ns: number): string {
  return ns >= 100_000 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`;
}

function pool(blocks: Measurement[]): Record<Op, number[]> {
  const out = {} as Record<Op, number[]>;
  for (const { op } of OPS) out[op] = blocks.flatMap((b) => b.samples[op]);
  return out;
}

function main(): void {
  if (process.getuid?.() !== 0) console.error('bench: not root; loading BPF objects will likely fail (run as root)');

  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-bench-'));
  const tsBlocks: Measurement[] = [];
  const refBlocks: Measurement[] = [];
  let reference = 'libbpf';
  const started = new Date();
  try {
    const bin = compileLibbpfReference('ref.c', dir);
    console.error(
      `bench: ${CONFIG.blocks} block(s) per side, each ${CONFIG.rounds} rounds (+${CONFIG.warmupRounds} warm-up) of ` +
        `${CONFIG.loadIters} loads, ${CONFIG.opIters} lookups, ${CONFIG.opIters} updates, ${CONFIG.runIters} test runs`,
    );
    const runTs = (): void => {
      tsBlocks.push(measureTsbpf());
    };
    const runRef = (): void => {
      const r = runReference(bin);
      reference = r.reference;
      refBlocks.push({ samples: r.samples });
    };
    // tsbpf, libbpf | libbpf, tsbpf | tsbpf, libbpf | ...: a linear drift in machine load cancels out.
    for (let b = 0; b < CONFIG.blocks; b++) {
      const order = b % 2 === 0 ? [runTs, runRef] : [runRef, runTs];
      for (const f of order) f();
      process.stderr.write(`bench: block ${b + 1}/${CONFIG.blocks} done\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const tsSamples = pool(tsBlocks);
  const refSamples = pool(refBlocks);
  const rows = OPS.map(({ op, label }) => {
    const tsbpf_ns = Math.round(median(tsSamples[op]) * 10) / 10;
    const libbpf_ns = Math.round(median(refSamples[op]) * 10) / 10;
    return { operation: op, label, tsbpf_ns, libbpf_ns, ratio: Math.round((tsbpf_ns / libbpf_ns) * 100) / 100 };
  });

  const host = {
    node: process.version,
    kernel: release(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
  };
  const nRounds = CONFIG.blocks * CONFIG.rounds;
  console.log(
    `\ntsbpf vs ${reference}: ${CONFIG.object}, median of ${nRounds} rounds per side ` +
      `(node ${host.node}, kernel ${host.kernel}, ${host.cpus} CPUs)${quick ? ' [--quick]' : ''}\n`,
  );
  const head = ['operation', 'tsbpf ns/op', 'libbpf ns/op', 'ratio'];
  const body = rows.map((r) => [r.label, fmtNs(r.tsbpf_ns), fmtNs(r.libbpf_ns), `${r.ratio.toFixed(2)}×`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('   '));
  for (const b of body) console.log(line(b));
  console.log('\nratio = tsbpf / libbpf (lower is better; 1.00× = as fast as libbpf)');

  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'latest.json');
  const json = {
    date: started.toISOString(),
    host,
    reference,
    config: { ...CONFIG, quick },
    results: rows.map(({ operation, tsbpf_ns, libbpf_ns, ratio }) => ({ operation, tsbpf_ns, libbpf_ns, ratio })),
    samples: { tsbpf: tsSamples, libbpf: refSamples },
  };
  writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  console.log(`wrote ${relative(process.cwd(), file)}`);
}

try {
  main();
} catch (e) {
  if (!(e instanceof BenchFailure)) throw e;
  console.error(`bench: ${e.message}`);
  process.exitCode = 1;
}
