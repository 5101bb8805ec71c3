// The fuzzer's engine: runs a target's inputs in worker threads (fuzz/worker.ts), watches each
// input's time budget through shared memory, and records crashes (foreign errors, worker deaths)
// and hangs to fuzz/crashers/. A killed or dead worker is replaced by one that continues after
// the input that killed it, with the corpus found so far.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import ts from 'typescript';
import { TARGETS, type TargetName } from './targets.js';
import { CTRL_INDEX, CTRL_LEN, CTRL_NEXT, CTRL_OK, CTRL_OURS, CTRL_WRAPPED, DATA_AT, TIME_AT, type WorkerInput, type WorkerMessage } from './worker.js';

export const DEFAULT_CRASH_DIR = fileURLToPath(new URL('./crashers/', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Transpiles src/ and fuzz/ to plain JavaScript (with inline source maps) under
 * node_modules/.cache, so that workers run without the TypeScript loader. Taking V8 coverage walks
 * the whole heap, and the loader's copy of the TypeScript compiler made that several times slower.
 * Returns the output directory, named after a hash of the sources (reused while they are unchanged).
 */
let transpiled: string | undefined;
export function transpileForWorkers(): string {
  // Once per process: the engine and its workers must agree on the shared memory layout even if
  // the sources change while a long run is going on.
  if (transpiled) return transpiled;
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) files.push(p);
    }
  };
  walk(join(ROOT, 'src'));
  walk(join(ROOT, 'fuzz'));
  files.sort();
  const hash = createHash('sha1');
  const sources = files.map((f) => {
    const text = readFileSync(f, 'utf8');
    hash.update(f).update('\0').update(text).update('\0');
    return text;
  });
  const out = join(ROOT, 'node_modules', '.cache', 'tsbpf-fuzz', hash.digest('hex').slice(0, 16));
  if (existsSync(join(out, 'done'))) return (transpiled = out);
  // The sources changed: copies of older sources made more than a day ago go.
  const cache = dirname(out);
  for (const old of existsSync(cache) ? readdirSync(cache) : []) {
    const p = join(cache, old);
    if (Date.now() - statSync(p).mtimeMs > 86_400_000) rmSync(p, { recursive: true, force: true });
  }
  const tmp = `${out}.tmp${process.pid}`;
  files.forEach((f, k) => {
    const js = ts.transpileModule(sources[k]!, {
      fileName: f,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, inlineSourceMap: true, inlineSources: false },
    }).outputText;
    const dest = join(tmp, relative(ROOT, f)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  });
  writeFileSync(join(tmp, 'done'), '');
  try {
    renameSync(tmp, out);
  } catch {
    // Another process got there first; its copy is as good.
  }
  return (transpiled = existsSync(join(out, 'done')) ? out : tmp);
}

export interface FuzzOptions {
  target: TargetName;
  inputs: number;
  seed?: number;
  /** Parallel workers for this target. */
  jobs?: number;
  /** Time budget of one input, in ms. */
  budgetMs?: number;
  corpusDir?: string;
  crashDir?: string;
  /** Inputs between two coverage snapshots. */
  batch?: number;
  coverage?: boolean;
  /** V8 heap limit of a worker. */
  heapMb?: number;
  /** Called about once a second with a progress line. */
  onProgress?: (line: string) => void;
}

export interface Finding {
  kind: 'crash' | 'hang' | 'death';
  index: number;
  file?: string;
  error: string;
}

export interface FuzzReport {
  target: TargetName;
  inputs: number;
  ms: number;
  execsPerSec: number;
  corpus: number;
  seeds: number;
  blocks: number;
  /** Inputs that returned normally / were rejected with a tsbpf error. */
  ok: number;
  rejected: number;
  /** Rejections whose cause is a foreign error a guard wrapped (not crashes, but suspicious). */
  wrapped: number;
  wrappedSample?: string;
  crashes: Finding[];
  hangs: Finding[];
  restarts: number;
}

/** Writes a crasher and its description; returns the .bin path (deduplicated by content). */
function saveCrasher(dir: string, target: TargetName, data: Uint8Array, text: string): string {
  mkdirSync(dir, { recursive: true });
  const sha = createHash('sha1').update(data).digest('hex').slice(0, 12);
  const base = join(dir, `${target}-${sha}`);
  writeFileSync(`${base}.bin`, data);
  writeFileSync(`${base}.txt`, `${text}\n`);
  return `${base}.bin`;
}

/** A short signature of an error (first line and first stack frame), to save few copies of one bug. */
function signature(error: string): string {
  const lines = error.split('\n');
  return `${lines[0]}|${lines.find((l) => l.trim().startsWith('at ')) ?? ''}`;
}

const MAX_PER_SIGNATURE = 3;

export async function fuzz(opts: FuzzOptions): Promise<FuzzReport> {
  const target = TARGETS[opts.target];
  const seed = opts.seed ?? 1;
  const jobs = Math.max(1, opts.jobs ?? 1);
  const budget = opts.budgetMs ?? 2000;
  const crashDir = opts.crashDir ?? DEFAULT_CRASH_DIR;
  const seeds = target.seeds(opts.corpusDir);
  if (seeds.length === 0) throw new Error(`fuzz target ${opts.target}: no seeds`);
  const maxLen = Math.max(64 * 1024, 2 * Math.max(...seeds.map((s) => s.length)));
  const report: FuzzReport = {
    target: opts.target,
    inputs: 0,
    ms: 0,
    execsPerSec: 0,
    corpus: seeds.length,
    seeds: seeds.length,
    blocks: 0,
    ok: 0,
    rejected: 0,
    wrapped: 0,
    crashes: [],
    hangs: [],
    restarts: 0,
  };
  const bySignature = new Map<string, number>();
  const record = (kind: Finding['kind'], index: number, data: Uint8Array | undefined, error: string): void => {
    const sig = `${kind}|${signature(error)}`;
    const n = (bySignature.get(sig) ?? 0) + 1;
    bySignature.set(sig, n);
    const finding: Finding = { kind, index, error };
    if (data && n <= MAX_PER_SIGNATURE) {
      finding.file = saveCrasher(crashDir, opts.target, data, `target: ${opts.target}\nkind: ${kind}\ninput index: ${index} (seed ${seed})\n\n${error}`);
    }
    (kind === 'hang' ? report.hangs : report.crashes).push(finding);
  };

  const jsRoot = transpileForWorkers();
  const workerUrl = pathToFileURL(join(jsRoot, 'fuzz', 'worker.js'));
  const srcPrefix = pathToFileURL(join(jsRoot, 'src')).href + '/';
  const t0 = Date.now();
  const per = Math.ceil(opts.inputs / jobs);
  const chains: Promise<void>[] = [];
  const blocksByChain: number[] = [];
  const done: number[] = [];
  const controls: Int32Array[] = [];
  let progressTimer: NodeJS.Timeout | undefined;
  if (opts.onProgress) {
    progressTimer = setInterval(() => {
      const d = done.reduce((a, b) => a + b, 0);
      const s = (Date.now() - t0) / 1000;
      opts.onProgress!(`${opts.target}: ${d}/${opts.inputs} inputs, ${(d / s).toFixed(0)}/s, corpus ${report.corpus}, blocks ${Math.max(0, ...blocksByChain)}, crashes ${report.crashes.length}, hangs ${report.hangs.length}`);
    }, 5000);
  }

  for (let j = 0; j < jobs; j++) {
    const start = j * per;
    const end = Math.min(opts.inputs, start + per);
    if (start >= end) continue;
    done[j] = 0;
    blocksByChain[j] = 0;
    // Each chain owns its corpus (seeds plus what it found); the report counts all entries.
    const corpus: Uint8Array[] = seeds.map((s) => new Uint8Array(s));
    chains.push(
      new Promise<void>((resolve, reject) => {
        const shared = new SharedArrayBuffer(DATA_AT + maxLen);
        const ctrl = new Int32Array(shared, 0, 8);
        controls.push(ctrl);
        const time = new Float64Array(shared, TIME_AT, 1);
        const bytes = new Uint8Array(shared, DATA_AT);
        const current = (): Uint8Array => bytes.slice(0, ctrl[CTRL_LEN]);
        const launch = (from: number): void => {
          Atomics.store(ctrl, CTRL_INDEX, -1);
          ctrl[CTRL_NEXT] = from;
          const input: WorkerInput = {
            target: opts.target,
            seed,
            start: from,
            end,
            corpus,
            shared,
            maxLen,
            batch: opts.batch ?? 128,
            srcPrefix,
            coverage: opts.coverage ?? true,
          };
          const worker = new Worker(workerUrl, {
            workerData: input,
            execArgv: [],
            env: { ...process.env, TSBPF_FUZZ_ROOT: ROOT },
            resourceLimits: { maxOldGenerationSizeMb: opts.heapMb ?? 512, maxYoungGenerationSizeMb: 64 },
            stdout: false,
            stderr: false,
          });
          let finished = false;
          let lastError: string | undefined;
          const settle = (next: number | undefined): void => {
            if (finished) return;
            finished = true;
            clearInterval(watch);
            if (next === undefined) resolve();
            else if (next >= end) resolve();
            else {
              report.restarts++;
              launch(next);
            }
          };
          const watch = setInterval(() => {
            const idx = Atomics.load(ctrl, CTRL_INDEX);
            if (idx < 0 || Date.now() - time[0]! <= budget) return;
            record('hang', idx, current(), `input ran longer than the ${budget} ms budget`);
            finished = true;
            clearInterval(watch);
            void worker.terminate().then(() => {
              report.restarts++;
              launch(idx + 1);
            });
          }, 100);
          worker.on('message', (m: WorkerMessage) => {
            switch (m.t) {
              case 'corpus':
                corpus.push(m.data);
                report.corpus++;
                break;
              case 'crash':
                record('crash', m.index, m.data, m.error);
                break;
              case 'progress':
              case 'done':
                done[j] = m.done - start;
                blocksByChain[j] = Math.max(blocksByChain[j]!, m.blocks);
                report.wrappedSample ??= m.wrappedSample;
                if (m.t === 'done') {
                  if (process.env.TSBPF_FUZZ_DEBUG) console.error(`${opts.target} worker ${j}: ${m.profile}`);
                  settle(undefined);
                }
                break;
            }
          });
          worker.on('error', (err) => {
            lastError = err?.stack ?? String(err);
          });
          worker.on('exit', (code) => {
            if (finished) return;
            const idx = Atomics.load(ctrl, CTRL_INDEX);
            const why = `worker died (exit code ${code}) ${lastError ?? ''}`.trim();
            if (idx >= 0) {
              record('death', idx, current(), why);
              settle(idx + 1);
            } else {
              // Died between inputs (while taking coverage, or at startup): a bug of ours, not the target's.
              const next = ctrl[CTRL_NEXT]!;
              if (report.restarts > 50) reject(new Error(`fuzz ${opts.target}: workers keep dying: ${why}`));
              else {
                record('death', next, undefined, why);
                settle(next);
              }
            }
          });
        };
        launch(start);
      }),
    );
  }
  try {
    await Promise.all(chains);
  } finally {
    if (progressTimer) clearInterval(progressTimer);
  }
  report.ms = Date.now() - t0;
  report.inputs = opts.inputs;
  report.execsPerSec = Math.round(opts.inputs / (report.ms / 1000));
  report.blocks = Math.max(0, ...blocksByChain);
  for (const c of controls) {
    report.ok += c[CTRL_OK]!;
    report.rejected += c[CTRL_OURS]!;
    report.wrapped += c[CTRL_WRAPPED]!;
  }
  return report;
}

/** One line per report, for humans. */
export function formatReport(r: FuzzReport): string {
  return (
    `${r.target.padEnd(8)} ${String(r.inputs).padStart(8)} inputs in ${(r.ms / 1000).toFixed(1)} s ` +
    `(${r.execsPerSec} execs/s), corpus ${r.seeds} -> ${r.corpus}, ${r.blocks} blocks, ` +
    `${r.ok} accepted / ${r.rejected} rejected (${r.wrapped} wrapped foreign), ` +
    `${r.crashes.length} crashes, ${r.hangs.length} hangs`
  );
}
