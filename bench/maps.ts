// tsbpf map benchmark: a 100 000-entry HASH map (u32 key -> u64 value) updated, looked up and iterated
// per key and by batches, through tsbpf (src/maps/map.ts, src/maps/batch.ts) and through libbpf
// (bench/maps_ref.c, compiled now into a temporary directory), in the same run. Figures are ns per
// element; ratios are tsbpf/libbpf. Performance targets live here, never in timed tests.
//
//   npm run bench:maps               (as root; about a minute)
//   npm run bench:maps -- --quick    (10 000 entries, one block, one round: a smoke test)
//
// The two sides run in alternating blocks (tsbpf, libbpf | libbpf, tsbpf | ...). Writes
// bench/results/maps.json. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfMap, MapType } from '../src/maps/map.js';
import { lookupBatch, readAll, updateBatch } from '../src/maps/batch.js';
import { BenchFailure, compileLibbpfReference, fail, median } from './common.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

const quick = process.argv.includes('--quick');
const CONFIG = {
  /** max_entries of the map, and elements written, read and iterated by every measurement */
  entries: quick ? 10_000 : 100_000,
  /** elements per call of the batched iteration (both sides) */
  batchSize: 4096,
  /** blocks per side, alternating tsbpf and libbpf */
  blocks: quick ? 1 : 2,
  /** recorded rounds per block; a figure is the median over all blocks' rounds */
  rounds: quick ? 1 : 2,
};

type Op = 'update_per_key' | 'update_batch' | 'lookup_per_key' | 'iterate_per_key' | 'iterate_batch' | 'lookup_batch_all';
const OPS: { op: Op; label: string; tsbpf: string; libbpf: string }[] = [
  { op: 'update_per_key', label: 'update, per key', tsbpf: 'map.update(i, value)', libbpf: 'bpf_map_update_elem' },
  { op: 'update_batch', label: 'update, batch', tsbpf: 'updateBatch(map, keys, values)', libbpf: 'bpf_map_update_batch' },
  { op: 'lookup_per_key', label: 'lookup, per key', tsbpf: 'map.lookup(i)', libbpf: 'bpf_map_lookup_elem' },
  { op: 'iterate_per_key', label: 'iterate, per key', tsbpf: 'map.entries() (keys() + lookup)', libbpf: 'bpf_map_get_next_key + bpf_map_lookup_elem' },
  { op: 'iterate_batch', label: `iterate, batch (${CONFIG.batchSize}/call)`, tsbpf: 'lookupBatch(map, { batchSize })', libbpf: 'bpf_map_lookup_batch loop' },
  { op: 'lookup_batch_all', label: 'batch lookup, whole map', tsbpf: 'readAll(map)', libbpf: 'bpf_map_lookup_batch, count = entries + 1' },
];

type Samples = Record<Op, number[]>;


// ---------------------------------------------------------------------------------------------
// libbpf reference


function runReference(bin: string): { reference: string; samples: Samples } {
  const r = spawnSync(bin, [CONFIG.entries, CONFIG.batchSize, CONFIG.rounds].map(String), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.error) fail(`running the libbpf reference: ${r.error.message}`);
  if (r.status !== 0) fail(`the libbpf reference exited with ${r.status ?? r.signal}`);
  try {
    return JSON.parse(r.stdout) as { reference: string; samples: Samples };
  } catch {
    fail(`the libbpf reference printed something that is not JSON:\n${r.stdout}`);
  }
}

// ---------------------------------------------------------------------------------------------
// tsbpf

export let sink = 0;
const now = (): bigint => process.hrtime.bigint();

function measureTsbpf(): Samples {
  const N = CONFIG.entries;
  const keys = Buffer.alloc(N * 4);
  const values = Buffer.alloc(N * 8);
  for (let i = 0; i < N; i++) {
    keys.writeUInt32LE(i, i * 4);
    values.writeBigUInt64LE(BigInt(i) * 3n + 1n, i * 8);
  }
  const expect = (key: number, low32: number): void => {
    if (low32 !== key * 3 + 1) fail(`key ${key} has value ${low32}, expected ${key * 3 + 1}`);
  };

  using map = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: N, name: 'bench_hash' });

  // Each op handles `n` elements (n < N: a warm-up on the first n).
  const ops: Record<Op, (n: number) => void> = {
    update_per_key: (n) => {
      for (let i = 0; i < n; i++) map.update(i, values.subarray(i * 8, i * 8 + 8));
    },
    update_batch: (n) => {
      if (updateBatch(map, keys.subarray(0, n * 4), values.subarray(0, n * 8)) !== n) fail('updateBatch: short count');
    },
    lookup_per_key: (n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const v = map.lookup(i);
        if (!v) fail(`lookup of ${i} found nothing`);
        expect(i, v.readUInt32LE(0));
        acc += v[0];
      }
      sink += acc;
    },
    iterate_per_key: (n) => {
      let seen = 0;
      for (const [k, v] of map.entries()) {
        expect(k.readUInt32LE(0), (v as Buffer).readUInt32LE(0));
        if (++seen === n) break;
      }
      if (seen !== n) fail(`iterate per key: ${seen} elements, expected ${n}`);
    },
    iterate_batch: (n) => {
      let seen = 0;
      for (const [k, v] of lookupBatch(map, { batchSize: CONFIG.batchSize })) {
        expect(k.readUInt32LE(0), (v as Buffer).readUInt32LE(0));
        if (++seen === n) break;
      }
      if (seen !== n) fail(`iterate by batches: ${seen} elements, expected ${n}`);
    },
    lookup_batch_all: () => {
      const all = readAll(map);
      if (all.count !== N) fail(`readAll: ${all.count} elements, expected ${N}`);
      // The contiguous buffers, read in place: no per-element allocation.
      const k = all.keys;
      const v = all.values;
      let acc = 0;
      for (let i = 0; i < all.count; i++) {
        expect(k.readUInt32LE(i * 4), v.readUInt32LE(i * 8));
        acc += v[i * 8];
      }
      sink += acc;
    },
  };

  // Warm-up: a tenth of the elements for the per-key ops (full runs take seconds), everything else once.
  ops.update_batch(N);
  for (const { op } of OPS) ops[op](op.endsWith('per_key') ? Math.max(1, N / 10) : N);

  const samples = Object.fromEntries(OPS.map(({ op }) => [op, [] as number[]])) as Samples;
  for (let r = 0; r < CONFIG.rounds; r++) {
    for (const { op } of OPS) {
      const t0 = now();
      ops[op](N);
      samples[op].push(Math.round((Number(now() - t0) / N) * 10) / 10);
    }
  }
  return samples;
}

// ---------------------------------------------------------------------------------------------


function fmtNs(ns: number): string {
  return ns >= 100_000 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`;
}

function main(): void {
  if (process.getuid?.() !== 0) console.error('bench:maps: not root; creating BPF maps will likely fail (run as root)');
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-bench-maps-'));
  const ts: Samples[] = [];
  const ref: Samples[] = [];
  let reference = 'libbpf';
  const started = new Date();
  try {
    const bin = compileLibbpfReference('maps_ref.c', dir);
    console.error(`bench:maps: ${CONFIG.entries} entries, ${CONFIG.blocks} block(s) per side, ${CONFIG.rounds} round(s) each (+ warm-up)`);
    const runTs = (): void => void ts.push(measureTsbpf());
    const runRef = (): void => {
      const r = runReference(bin);
      reference = r.reference;
      ref.push(r.samples);
    };
    for (let b = 0; b < CONFIG.blocks; b++) {
      for (const f of b % 2 === 0 ? [runTs, runRef] : [runRef, runTs]) f();
      process.stderr.write(`bench:maps: block ${b + 1}/${CONFIG.blocks} done\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const pooled = (blocks: Samples[], op: Op): number[] => blocks.flatMap((b) => b[op]);
  const med = (blocks: Samples[], op: Op): number => Math.round(median(pooled(blocks, op)) * 10) / 10;
  const rows = OPS.map(({ op, label, tsbpf, libbpf }) => {
    const tsbpf_ns = med(ts, op);
    const libbpf_ns = med(ref, op);
    return { operation: op, label, tsbpf, libbpf, tsbpf_ns, libbpf_ns, ratio: Math.round((tsbpf_ns / libbpf_ns) * 100) / 100 };
  });
  const tsBatch = med(ts, 'iterate_batch');
  const refPerKey = med(ref, 'iterate_per_key');
  const target = {
    description: 'tsbpf batch iteration is not slower per element than libbpf per-key iteration',
    tsbpf_iterate_batch_ns: tsBatch,
    libbpf_iterate_per_key_ns: refPerKey,
    ratio: Math.round((tsBatch / refPerKey) * 100) / 100,
    holds: tsBatch <= refPerKey,
  };

  const host = { node: process.version, kernel: release(), cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length };
  console.log(
    `\ntsbpf vs ${reference}: HASH u32→u64, ${CONFIG.entries} entries, ns per element, median of ` +
      `${CONFIG.blocks * CONFIG.rounds} round(s) per side (node ${host.node}, kernel ${host.kernel}, ${host.cpus} CPUs)${quick ? ' [--quick]' : ''}\n`,
  );
  const head = ['operation', 'tsbpf ns/elem', 'libbpf ns/elem', 'ratio'];
  const body = rows.map((r) => [r.label, fmtNs(r.tsbpf_ns), fmtNs(r.libbpf_ns), `${r.ratio.toFixed(2)}×`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('   '));
  for (const b of body) console.log(line(b));
  console.log('\nratio = tsbpf / libbpf (lower is better; 1.00× = as fast as libbpf)');
  console.log(
    `target: tsbpf batch iteration ${fmtNs(tsBatch)}/elem vs libbpf per-key iteration ${fmtNs(refPerKey)}/elem ` +
      `(${target.ratio.toFixed(2)}×): ${target.holds ? 'holds' : 'DOES NOT hold'}`,
  );

  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'maps.json');
  writeFileSync(
    file,
    JSON.stringify(
      { date: started.toISOString(), host, reference, config: { ...CONFIG, quick }, results: rows, target, samples: { tsbpf: ts, libbpf: ref } },
      null,
      2,
    ) + '\n',
  );
  console.log(`wrote ${relative(process.cwd(), file)}`);
}

try {
  main();
} catch (e) {
  if (!(e instanceof BenchFailure)) throw e;
  console.error(`bench:maps: ${e.message}`);
  process.exitCode = 1;
}
