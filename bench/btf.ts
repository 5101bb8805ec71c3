// BTF benchmark: parse the running kernel's BTF (/sys/kernel/btf/vmlinux) and look up the types a
// real tracing tool needs, through tsbpf and through libbpf (bench/btf_ref.c, compiled now into a
// temporary directory), in the same run, reported as ratios tsbpf/libbpf. A benchmark, not a timed
// test: performance targets live here.
//
//   npm run bench:btf               (about half a minute; root not needed)
//   npm run bench:btf -- --quick    (fewer processes and iterations: a smoke test, noisier figures)
//
// One iteration, on each side:
//   tsbpf   Btf.parse(readFileSync(path)) (a fresh parse, not the cached loadKernelBtf()), then
//           findType() + member walks
//   libbpf  btf__parse(path, NULL), then btf__find_by_name_kind() + member walks
// for: task_struct and a few of its members' offsets, trace_event_raw_sched_switch and its fields,
// the btf_trace_sched_switch typedef and its func proto's parameters, rq and a few members, and the
// bpf_map_type enum and a few of its values. Both sides must find the same ids, sizes, offsets and
// values, or the bench fails.
//
// Measured:
//   cold  the first iteration in a fresh process (several processes per side, alternating);
//         process start-up and module loading are not timed, on either side
//   warm  repeated iterations in one process, after warm-up ones (alternating blocks of processes);
//         also the same lookups a second time on the same parsed BTF, outside the iteration's total
//   RSS   peak RSS increase over one cold iteration (VmHWM, reset through /proc/self/clear_refs
//         just before it), and the RSS still held after it while the parsed BTF is alive
//
// This file is also the tsbpf child process (`--child cold|warm ...`), so that the tsbpf side gets
// fresh processes exactly like the C side. Writes bench/results/btf.json. See bench/README.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { Btf, type BtfType } from '../src/index.js';
import { BenchFailure, compileLibbpfReference, fail, median } from './common.js';

const BENCH_FILE = fileURLToPath(import.meta.url);
const BENCH_DIR = dirname(BENCH_FILE);
const ROOT = resolve(BENCH_DIR, '..');
const VMLINUX = '/sys/kernel/btf/vmlinux';

/** What is looked up: the same lists as bench/btf_ref.c (the results are compared). */
const TASK_MEMBERS = ['__state', 'flags', 'pid', 'tgid', 'real_parent', 'mm', 'cred', 'comm'];
const SWITCH_MEMBERS = ['prev_comm', 'prev_pid', 'prev_prio', 'prev_state', 'next_comm', 'next_pid', 'next_prio'];
const RQ_MEMBERS = ['nr_running', 'cpu', 'curr', 'clock'];
const MAP_TYPE_VALUES = ['BPF_MAP_TYPE_HASH', 'BPF_MAP_TYPE_RINGBUF', 'BPF_MAP_TYPE_ARENA'];

const quick = process.argv.includes('--quick');
const CONFIG = {
  path: VMLINUX,
  /** fresh processes per side for the cold figures (alternating tsbpf, libbpf, libbpf, tsbpf, ...) */
  coldRuns: quick ? 3 : 12,
  /** warm processes ("blocks") per side, alternating */
  warmBlocks: quick ? 1 : 4,
  /** recorded iterations per warm block */
  warmIters: quick ? 5 : 15,
  /** unrecorded iterations before those, in every warm block */
  warmupIters: quick ? 2 : 5,
};

/** A failure of the bench's own (environment, reference, mismatch): reported without a stack, exit status 1. */


// ---------------------------------------------------------------------------------------------
// One iteration's lookups, through tsbpf

interface StructResult {
  id: number;
  size: number;
  /** bit offsets; null when the member is absent */
  members: Record<string, number | null>;
}

interface LookupResult {
  task_struct: StructResult;
  trace_event_raw_sched_switch: StructResult;
  btf_trace_sched_switch: {
    id: number;
    proto: number;
    returns: number;
    /** each parameter's type through typedefs and modifiers; a pointer's target likewise, else null */
    params: { type: number; target: number | null }[];
  };
  rq: StructResult;
  bpf_map_type: { id: number; size: number; count: number; values: Record<string, number | null> };
}

/** Bit offset of member `name` of struct/union `t`, looking into anonymous members; -1 if none. */
function memberBitOffset(btf: Btf, t: BtfType, name: string): number {
  if (t.kind !== 'struct' && t.kind !== 'union') return -1;
  for (const m of t.members) {
    if (m.name === name) return m.bitOffset;
    if (m.name === '') {
      const off = memberBitOffset(btf, btf.resolve(m.type), name);
      if (off >= 0) return m.bitOffset + off;
    }
  }
  return -1;
}

function lookupStruct(btf: Btf, name: string, members: string[]): StructResult {
  const t = btf.findType(name, 'struct');
  if (t.kind !== 'struct') fail(`${name} is not a struct`);
  const offsets: Record<string, number | null> = {};
  for (const m of members) {
    const off = memberBitOffset(btf, t, m);
    offsets[m] = off < 0 ? null : off;
  }
  return { id: t.id, size: t.size, members: offsets };
}

function lookups(btf: Btf): LookupResult {
  const task_struct = lookupStruct(btf, 'task_struct', TASK_MEMBERS);
  const trace_event_raw_sched_switch = lookupStruct(btf, 'trace_event_raw_sched_switch', SWITCH_MEMBERS);

  // typedef void (*btf_trace_sched_switch)(void *, bool, struct task_struct *, ...)
  const td = btf.findType('btf_trace_sched_switch', 'typedef');
  if (td.kind !== 'typedef') fail('btf_trace_sched_switch is not a typedef');
  const ptr = btf.resolve(td.type);
  if (ptr.kind !== 'ptr') fail('btf_trace_sched_switch is not a typedef of a pointer');
  const proto = btf.resolve(ptr.type);
  if (proto.kind !== 'func_proto') fail('btf_trace_sched_switch is not a typedef of a function pointer');
  const params = proto.params.map((p) => {
    const t = btf.resolve(p.type);
    return { type: t.id, target: t.kind === 'ptr' ? btf.resolve(t.type).id : null };
  });

  const rq = lookupStruct(btf, 'rq', RQ_MEMBERS);

  const e = btf.findType('bpf_map_type', 'enum');
  if (e.kind !== 'enum') fail('bpf_map_type is not an enum');
  const values: Record<string, number | null> = {};
  for (const name of MAP_TYPE_VALUES) values[name] = e.values.find((v) => v.name === name)?.value ?? null;

  return {
    task_struct,
    trace_event_raw_sched_switch,
    btf_trace_sched_switch: { id: td.id, proto: proto.id, returns: btf.resolve(proto.returnType).id, params },
    rq,
    bpf_map_type: { id: e.id, size: e.size, count: e.values.length, values },
  };
}

// ---------------------------------------------------------------------------------------------
// What both kinds of child print

interface ColdReport {
  reference?: string;
  types: number;
  parse_ns: number;
  lookup_ns: number;
  total_ns: number;
  rss: { peak_reset: boolean; before_kb: number; peak_before_kb: number; after_kb: number; peak_kb: number };
  result: LookupResult;
}

/** relookup: the same lookups again on the same parsed BTF (tsbpf's name index is built by then). */
type Phase = 'parse' | 'lookup' | 'relookup' | 'total';
const PHASES: Phase[] = ['parse', 'lookup', 'relookup', 'total'];

interface WarmReport {
  reference?: string;
  samples: Record<Phase, number[]>;
  result: LookupResult;
}

// ---------------------------------------------------------------------------------------------
// The tsbpf child

const now = (): bigint => process.hrtime.bigint();

/** Resets this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0). */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** VmRSS and VmHWM of this process, in KiB. */
function readRss(): { rss: number; hwm: number } {
  const status = readFileSync('/proc/self/status', 'latin1');
  const rss = /^VmRSS:\s+(\d+)/m.exec(status);
  const hwm = /^VmHWM:\s+(\d+)/m.exec(status);
  if (!rss || !hwm) fail('no VmRSS/VmHWM in /proc/self/status');
  return { rss: Number(rss[1]), hwm: Number(hwm[1]) };
}

function childCold(path: string): ColdReport {
  const reset = resetPeakRss();
  const before = readRss();
  const t0 = now();
  const btf = Btf.parse(readFileSync(path));
  const t1 = now();
  const result = lookups(btf);
  const t2 = now();
  const after = readRss(); // while the parsed BTF is still alive
  return {
    types: btf.length,
    parse_ns: Number(t1 - t0),
    lookup_ns: Number(t2 - t1),
    total_ns: Number(t2 - t0),
    rss: { peak_reset: reset, before_kb: before.rss, peak_before_kb: before.hwm, after_kb: after.rss, peak_kb: after.hwm },
    result,
  };
}

function childWarm(path: string, iters: number, warmup: number): WarmReport {
  const samples: Record<Phase, number[]> = { parse: [], lookup: [], relookup: [], total: [] };
  let result: LookupResult | undefined;
  for (let i = -warmup; i < iters; i++) {
    const t0 = now();
    const btf = Btf.parse(readFileSync(path));
    const t1 = now();
    result = lookups(btf);
    const t2 = now();
    const again = lookups(btf);
    const t3 = now();
    if (!isDeepStrictEqual(again, result)) fail('the same lookups on the same BTF found different results');
    if (i >= 0) {
      samples.parse.push(Number(t1 - t0));
      samples.lookup.push(Number(t2 - t1));
      samples.relookup.push(Number(t3 - t2));
      samples.total.push(Number(t2 - t0));
    }
  }
  return { samples, result: result! };
}

function child(args: string[]): void {
  const [mode, path, iters, warmup] = args;
  let report: ColdReport | WarmReport;
  if (mode === 'cold' && path) report = childCold(path);
  else if (mode === 'warm' && path && iters && warmup) report = childWarm(path, Number(iters), Number(warmup));
  else fail(`bad child arguments: ${args.join(' ')}`);
  process.stdout.write(JSON.stringify(report) + '\n');
}

// ---------------------------------------------------------------------------------------------
// The parent: the libbpf reference and the runs


/** Runs one child process (the C reference, or this file with --child) and parses its JSON. */
function runChild<T>(what: string, cmd: string, args: string[]): T {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 << 20 });
  if (r.error) fail(`running the ${what}: ${r.error.message}`);
  if (r.status !== 0) fail(`the ${what} exited with ${r.status ?? r.signal}`);
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    fail(`the ${what} printed something that is not JSON:\n${r.stdout}`);
  }
}

/**
 * This file and the modules of src/ it imports, transpiled (transpile-only, like the TypeScript loader `npm run bench:btf`
 * uses, and with the build's target) into `dir`, so the tsbpf children run plain JavaScript the way
 * an installed tsbpf (dist/) runs. Running them through the TypeScript loader instead would put the
 * TypeScript compiler (~200 MiB of heap) in every child: a garbage collection during the parse would
 * have to go through it, and the RSS baseline would be that of a compiler. Returns the child script.
 */
function transpileForChildren(dir: string): string {
  const require = createRequire(import.meta.url);
  const ts = require('typescript') as typeof import('typescript');
  const out = join(dir, 'js');
  // This file and every module it reaches through relative imports (not all of src/).
  const todo = [relative(ROOT, BENCH_FILE)];
  const done = new Set<string>();
  for (let file = todo.pop(); file !== undefined; file = todo.pop()) {
    if (done.has(file)) continue;
    done.add(file);
    const text = readFileSync(join(ROOT, file), 'utf8');
    for (const { fileName: spec } of ts.preProcessFile(text, true, false).importedFiles) {
      if (spec.startsWith('.')) todo.push(join(dirname(file), spec).replace(/\.js$/, '.ts'));
    }
    const { outputText, diagnostics } = ts.transpileModule(text, {
      fileName: file,
      reportDiagnostics: true,
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, sourceMap: false },
    });
    if (diagnostics?.length) {
      fail(`transpiling ${file}: ${ts.flattenDiagnosticMessageText(diagnostics[0]!.messageText, '\n')}`);
    }
    const target = join(out, file.replace(/\.ts$/, '.js'));
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, outputText);
  }
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules')); // elfy, ffi-rs
  return join(out, relative(ROOT, BENCH_FILE).replace(/\.ts$/, '.js'));
}

/** The tsbpf child: the transpiled copy of this file, in a fresh node. */
function runTsChild<T>(script: string, args: string[]): T {
  return runChild<T>('tsbpf child', process.execPath, [script, '--child', ...args]);
}


function fmtNs(ns: number): string {
  return ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1000 ? `${(ns / 1000).toFixed(1)} µs` : `${ns.toFixed(0)} ns`;
}

function fmtKb(kb: number): string {
  return `${(kb / 1024).toFixed(1)} MiB`;
}

/** The tsbpf result must be the libbpf one, and must make sense. */
function checkResults(ts: LookupResult, ref: LookupResult, from: string): void {
  if (!isDeepStrictEqual(ts, ref)) {
    fail(
      `tsbpf and libbpf disagree (${from}):\ntsbpf:  ${JSON.stringify(ts)}\nlibbpf: ${JSON.stringify(ref)}`,
    );
  }
  const task = ts.task_struct.id;
  const params = ts.btf_trace_sched_switch.params;
  if (params.length < 4 || params[2]!.target !== task || params[3]!.target !== task) {
    fail(`btf_trace_sched_switch's prev/next parameters are not struct task_struct *: ${JSON.stringify(params)}`);
  }
  if (ts.task_struct.members.pid === null || ts.task_struct.members.comm === null) {
    fail('task_struct has no pid or comm member');
  }
}

function main(): void {
  if (!existsSync(VMLINUX)) fail(`${VMLINUX} does not exist: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF)`);
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-bench-btf-'));
  const started = new Date();
  const load = loadavg();
  const cold: { tsbpf: ColdReport[]; libbpf: ColdReport[] } = { tsbpf: [], libbpf: [] };
  const warm: { tsbpf: WarmReport[]; libbpf: WarmReport[] } = { tsbpf: [], libbpf: [] };
  let reference = 'libbpf';
  try {
    const bin = compileLibbpfReference('btf_ref.c', dir);
    const script = transpileForChildren(dir);
    console.error(
      `bench:btf: ${CONFIG.coldRuns} cold processes per side, then ${CONFIG.warmBlocks} warm process(es) per side ` +
        `of ${CONFIG.warmIters} iterations (+${CONFIG.warmupIters} warm-up)`,
    );
    const coldTs = (): void => void cold.tsbpf.push(runTsChild<ColdReport>(script, ['cold', VMLINUX]));
    const coldRef = (): void => {
      const r = runChild<ColdReport>('libbpf reference', bin, ['cold', VMLINUX]);
      reference = r.reference ?? reference;
      cold.libbpf.push(r);
    };
    // tsbpf, libbpf | libbpf, tsbpf | ...: a linear drift in machine load cancels out.
    for (let i = 0; i < CONFIG.coldRuns; i++) for (const f of i % 2 === 0 ? [coldTs, coldRef] : [coldRef, coldTs]) f();
    process.stderr.write('bench:btf: cold runs done\n');

    const warmArgs = ['warm', VMLINUX, String(CONFIG.warmIters), String(CONFIG.warmupIters)];
    const warmTs = (): void => void warm.tsbpf.push(runTsChild<WarmReport>(script, warmArgs));
    const warmRef = (): void => void warm.libbpf.push(runChild<WarmReport>('libbpf reference', bin, warmArgs));
    for (let b = 0; b < CONFIG.warmBlocks; b++) {
      for (const f of b % 2 === 0 ? [warmTs, warmRef] : [warmRef, warmTs]) f();
      process.stderr.write(`bench:btf: warm block ${b + 1}/${CONFIG.warmBlocks} done\n`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const expected = cold.libbpf[0]!.result;
  cold.tsbpf.forEach((r, i) => checkResults(r.result, expected, `cold run ${i + 1}`));
  warm.tsbpf.forEach((r, i) => checkResults(r.result, expected, `warm block ${i + 1}`));
  for (const r of [...cold.libbpf, ...warm.libbpf]) {
    if (!isDeepStrictEqual(r.result, expected)) fail('the libbpf reference found different results in different runs');
  }

  type Side = 'tsbpf' | 'libbpf';
  const coldMedian = (side: Side, key: 'parse_ns' | 'lookup_ns' | 'total_ns'): number =>
    median(cold[side].map((r) => r[key]));
  const warmSamples = (side: Side, phase: Phase): number[] => warm[side].flatMap((r) => r.samples[phase]);
  const peakKb = (side: Side): number => median(cold[side].map((r) => r.rss.peak_kb - r.rss.before_kb));
  const heldKb = (side: Side): number => median(cold[side].map((r) => r.rss.after_kb - r.rss.before_kb));
  const peakReset = [...cold.tsbpf, ...cold.libbpf].every((r) => r.rss.peak_reset);

  const nWarm = CONFIG.warmBlocks * CONFIG.warmIters;
  const rows: { measure: string; label: string; unit: 'ns' | 'KiB'; tsbpf: number; libbpf: number }[] = [];
  const addTime = (measure: string, label: string, f: (s: Side) => number): void => {
    rows.push({ measure, label, unit: 'ns', tsbpf: Math.round(f('tsbpf')), libbpf: Math.round(f('libbpf')) });
  };
  addTime('cold_parse', 'cold: parse', (s) => coldMedian(s, 'parse_ns'));
  addTime('cold_lookup', 'cold: lookups', (s) => coldMedian(s, 'lookup_ns'));
  addTime('cold_total', 'cold: parse + lookups', (s) => coldMedian(s, 'total_ns'));
  addTime('warm_parse', 'warm: parse', (s) => median(warmSamples(s, 'parse')));
  addTime('warm_lookup', 'warm: lookups', (s) => median(warmSamples(s, 'lookup')));
  addTime('warm_total', 'warm: parse + lookups', (s) => median(warmSamples(s, 'total')));
  addTime('warm_relookup', 'warm: same lookups again, same parse', (s) => median(warmSamples(s, 'relookup')));
  rows.push({ measure: 'rss_peak', label: 'peak RSS increase, one parse', unit: 'KiB', tsbpf: peakKb('tsbpf'), libbpf: peakKb('libbpf') });
  rows.push({ measure: 'rss_held', label: 'RSS held after it', unit: 'KiB', tsbpf: heldKb('tsbpf'), libbpf: heldKb('libbpf') });
  const results = rows.map((r) => ({ ...r, ratio: Math.round((r.tsbpf / r.libbpf) * 100) / 100 }));

  const host = {
    node: process.version,
    kernel: release(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    loadavg: load.map((l) => Math.round(l * 100) / 100),
  };
  const vmlinux = { bytes: readFileSync(VMLINUX).length, types: cold.tsbpf[0]!.types };
  console.log(
    `\ntsbpf vs ${reference}: ${VMLINUX} (${(vmlinux.bytes / 2 ** 20).toFixed(1)} MiB, ${vmlinux.types} types); ` +
      `cold = median of ${CONFIG.coldRuns} fresh processes, warm = median of ${nWarm} iterations per side ` +
      `(node ${host.node}, kernel ${host.kernel}, ${host.cpus} CPUs)${quick ? ' [--quick]' : ''}\n`,
  );
  const head = ['measure', 'tsbpf', 'libbpf', 'ratio'];
  const body = results.map((r) => {
    const fmt = r.unit === 'ns' ? fmtNs : fmtKb;
    return [r.label, fmt(r.tsbpf), fmt(r.libbpf), `${r.ratio.toFixed(2)}×`];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('   ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('   '));
  for (const b of body) console.log(line(b));
  console.log('\nratio = tsbpf / libbpf (lower is better; 1.00× = as fast / as small as libbpf)');
  if (!peakReset) console.log('note: /proc/self/clear_refs could not reset the peak RSS: the RSS figures are not reliable');

  const resultsDir = join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, 'btf.json');
  const json = {
    date: started.toISOString(),
    host,
    reference,
    vmlinux,
    config: { ...CONFIG, quick },
    lookups: {
      task_struct: TASK_MEMBERS,
      trace_event_raw_sched_switch: SWITCH_MEMBERS,
      btf_trace_sched_switch: 'typedef -> ptr -> func_proto params',
      rq: RQ_MEMBERS,
      bpf_map_type: MAP_TYPE_VALUES,
    },
    found: expected,
    results,
    cold: {
      tsbpf: cold.tsbpf.map(({ parse_ns, lookup_ns, total_ns, rss }) => ({ parse_ns, lookup_ns, total_ns, rss })),
      libbpf: cold.libbpf.map(({ parse_ns, lookup_ns, total_ns, rss }) => ({ parse_ns, lookup_ns, total_ns, rss })),
    },
    warm: {
      tsbpf: Object.fromEntries(PHASES.map((p) => [p, warmSamples('tsbpf', p)])),
      libbpf: Object.fromEntries(PHASES.map((p) => [p, warmSamples('libbpf', p)])),
    },
  };
  writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  console.log(`wrote ${relative(process.cwd(), file)}`);
}

try {
  const at = process.argv.indexOf('--child');
  if (at >= 0) child(process.argv.slice(at + 1));
  else main();
} catch (e) {
  if (!(e instanceof BenchFailure)) throw e;
  console.error(`bench:btf: ${e.message}`);
  process.exitCode = 1;
}
