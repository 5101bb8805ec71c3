// The fuzzer's worker thread: generates inputs [start, end) of one target from the corpus, runs
// them, and reports crashes and new corpus entries to the engine (fuzz/engine.ts).
//
// Coverage is V8 block coverage (node:inspector, Profiler.takePreciseCoverage in binary mode),
// taken once per batch because taking it is much slower than running one input. A batch that
// covers blocks never seen before is run again input by input to find which inputs to keep.

import { Session } from 'node:inspector';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { TsbpfError } from '../src/errors.js';
import { mutate, Rng, type Layout } from './mutate.js';
import { TARGETS, type TargetName } from './targets.js';

export interface WorkerInput {
  target: TargetName;
  seed: number;
  /** First input index to run and one past the last. */
  start: number;
  end: number;
  /** Seeds plus entries found so far; all are run once at startup to learn their coverage. */
  corpus: Uint8Array[];
  /** Control words and the current input (see CTRL_*), read by the engine's watchdog. */
  shared: SharedArrayBuffer;
  maxLen: number;
  batch: number;
  /** URL prefix of the files whose blocks count (the repository's src/). */
  srcPrefix: string;
  coverage: boolean;
}

export type WorkerMessage =
  | { t: 'corpus'; data: Uint8Array }
  | { t: 'crash'; index: number; data: Uint8Array; error: string }
  | { t: 'progress'; done: number; blocks: number; wrappedSample?: string }
  | { t: 'done'; done: number; blocks: number; wrappedSample?: string; profile: string };

/**
 * Shared control words: [0] index being run (-1 idle), [1] its length, [2] next index to run, and
 * counts of inputs that returned [3], were rejected with a tsbpf error [4], of which with a foreign
 * cause [5] (kept here so that they survive a worker that dies).
 */
export const CTRL_INDEX = 0;
export const CTRL_LEN = 1;
export const CTRL_NEXT = 2;
export const CTRL_OK = 3;
export const CTRL_OURS = 4;
export const CTRL_WRAPPED = 5;
/** Byte offset of the Float64 start time (ms since the epoch), then of the input bytes. */
export const TIME_AT = 32;
export const DATA_AT = 40;

interface ScriptCoverage {
  url: string;
  functions: { ranges: { startOffset: number; endOffset: number; count: number }[] }[];
}

function main(w: WorkerInput): void {
  // Stack traces of crashes should point into the TypeScript sources, not the transpiled copy.
  process.setSourceMapsEnabled(true);
  const target = TARGETS[w.target];
  const ctrl = new Int32Array(w.shared, 0, 8);
  const time = new Float64Array(w.shared, TIME_AT, 1);
  const data = new Uint8Array(w.shared, DATA_AT);
  const post = (m: WorkerMessage): void => parentPort!.postMessage(m);

  const corpus: Buffer[] = w.corpus.map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
  const layouts: (Layout | undefined)[] = [];
  const layoutOf = (i: number): Layout => (layouts[i] ??= target.layout(corpus[i]!));

  // Self-test of the engine: TSBPF_FUZZ_INJECT="crash:5,hang:9,oom:13" misbehaves at those input indexes.
  const inject = new Map<number, string>();
  for (const item of (process.env.TSBPF_FUZZ_INJECT ?? '').split(',').filter(Boolean)) {
    const [what, at] = item.split(':');
    inject.set(Number(at), what!);
  }
  const misbehave = (what: string | undefined): void => {
    if (what === 'crash') throw new TypeError('injected crash');
    if (what === 'hang') for (;;);
    if (what === 'oom') {
      const hog: number[][] = [];
      for (;;) hog.push(new Array(1e6).fill(1.5));
    }
  };

  const stats = { wrappedSample: undefined as string | undefined };

  /** Runs one input under the watchdog; reports a crash. */
  const runOne = (index: number, input: Buffer, count = true): void => {
    const n = Math.min(input.length, data.length);
    data.set(input.subarray(0, n));
    ctrl[CTRL_LEN] = n;
    time[0] = Date.now();
    Atomics.store(ctrl, CTRL_INDEX, index);
    try {
      if (count && inject.size) misbehave(inject.get(index));
      target.run(input);
      if (count) ctrl[CTRL_OK]++;
    } catch (err) {
      if (!count) {
        // A re-run for coverage: already counted and reported.
      } else if (err instanceof TsbpfError) {
        ctrl[CTRL_OURS]++;
        const cause = err.cause;
        if (cause !== undefined && !(cause instanceof TsbpfError)) {
          // A foreign error caught and wrapped by a guard: not a crash, but worth a look.
          ctrl[CTRL_WRAPPED]++;
          stats.wrappedSample ??= `${err.message} <- ${(cause as Error)?.stack?.split('\n').slice(0, 3).join(' | ')}`;
        }
      } else {
        const e = err as Error;
        const error = e instanceof Error ? `${e.stack ?? `${e.name}: ${e.message}`}` : `non-Error thrown: ${String(err)}`;
        post({ t: 'crash', index, data: new Uint8Array(input), error });
      }
    }
    Atomics.store(ctrl, CTRL_INDEX, -1);
  };

  // ---- coverage
  let session: Session | undefined;
  const known = new Map<string, [number, number][]>(); // per function: every block range seen
  const seen = new Set<string>();
  // Where the time goes (TSBPF_FUZZ_DEBUG=1 prints it): taking coverage versus running inputs.
  const prof = { takes: 0, takeMs: 0, runs: 0, runMs: 0, reruns: 0, slowest: 0, slowestLen: 0 };
  const take = (): ScriptCoverage[] => {
    const t0 = performance.now();
    prof.takes++;
    let out: ScriptCoverage[] = [];
    let called = false;
    session!.post('Profiler.takePreciseCoverage', (err, res) => {
      called = true;
      if (err) throw err;
      out = (res as { result: ScriptCoverage[] }).result;
    });
    if (!called) throw new Error('inspector session answered asynchronously');
    prof.takeMs += performance.now() - t0;
    return out;
  };
  /** Takes coverage and counts blocks not seen before; adds them to `seen` when `commit`. */
  const newBlocks = (commit: boolean): number => {
    let fresh = 0;
    for (const sc of take()) {
      if (!sc.url.startsWith(w.srcPrefix)) continue;
      for (const fn of sc.functions) {
        const ranges = fn.ranges;
        if (ranges.length === 0 || ranges[0]!.count === 0) continue;
        const fkey = `${sc.url}:${ranges[0]!.startOffset}`;
        let blocks = known.get(fkey);
        if (!blocks) known.set(fkey, (blocks = []));
        const zero: [number, number][] = [];
        for (let k = 1; k < ranges.length; k++) {
          const r = ranges[k]!;
          if (r.count !== 0) continue;
          zero.push([r.startOffset, r.endOffset]);
          if (!blocks.some(([s, e]) => s === r.startOffset && e === r.endOffset)) blocks.push([r.startOffset, r.endOffset]);
        }
        const keys = [fkey];
        for (const [s, e] of blocks) {
          if (!zero.some(([zs, ze]) => zs <= s && e <= ze)) keys.push(`${fkey}:${s}:${e}`);
        }
        for (const key of keys) {
          if (seen.has(key)) continue;
          fresh++;
          if (commit) seen.add(key);
        }
      }
    }
    return fresh;
  };
  if (w.coverage) {
    session = new Session();
    session.connect();
    const call = (method: string, params?: object): void => {
      let called = false;
      session!.post(method, params, (err) => {
        called = true;
        if (err) throw err;
      });
      if (!called) throw new Error(`inspector: ${method} answered asynchronously`);
    };
    call('Profiler.enable');
    call('Profiler.startPreciseCoverage', { callCount: false, detailed: true });
    take();
    // Learn the corpus's coverage (index -1: these are not numbered inputs).
    for (const c of corpus) {
      runOne(-1, c, false);
      newBlocks(true);
    }
  }

  const pickEntry = (rng: Rng): number => {
    // Tournament of two, favouring the smaller entry: small inputs run faster.
    const a = rng.below(corpus.length);
    const b = rng.below(corpus.length);
    return rng.chance(0.7) === corpus[a]!.length <= corpus[b]!.length ? a : b;
  };

  const batch: Buffer[] = [];
  const batchIndex: number[] = [];
  const keep = (k: number): void => {
    corpus.push(batch[k]!);
    post({ t: 'corpus', data: new Uint8Array(batch[k]!) });
  };
  /**
   * Finds the inputs of batch[lo, hi) (which together covered something new) that add coverage, by
   * halving: a half is re-run as a whole and only searched further when it covers something new.
   * Taking coverage costs far more than an input, and few inputs of a batch add anything.
   */
  const bisect = (lo: number, hi: number): void => {
    if (hi - lo === 1) {
      prof.reruns++;
      runOne(batchIndex[lo]!, batch[lo]!, false);
      if (newBlocks(true) > 0) keep(lo);
      return;
    }
    const mid = (lo + hi) >>> 1;
    for (const [a, b] of [[lo, mid], [mid, hi]] as const) {
      if (b - a === 1) {
        bisect(a, b);
        continue;
      }
      for (let k = a; k < b; k++) {
        prof.reruns++;
        runOne(batchIndex[k]!, batch[k]!, false);
      }
      if (newBlocks(false) > 0) bisect(a, b);
    }
  };
  let lastReport = Date.now();
  for (let i = w.start; i < w.end; ) {
    batch.length = 0;
    batchIndex.length = 0;
    const stop = Math.min(w.end, i + w.batch);
    for (; i < stop; i++) {
      const rng = new Rng(w.seed, i);
      const e = pickEntry(rng);
      const other = corpus.length > 1 ? corpus[rng.below(corpus.length)] : undefined;
      const input = mutate(rng, corpus[e]!, layoutOf(e), other, w.maxLen);
      const r0 = performance.now();
      runOne(i, input);
      prof.runs++;
      const dt = performance.now() - r0;
      prof.runMs += dt;
      if (dt > prof.slowest) {
        prof.slowest = dt;
        prof.slowestLen = input.length;
      }
      if (w.coverage) {
        batch.push(input);
        batchIndex.push(i);
      }
    }
    if (w.coverage && newBlocks(false) > 0) bisect(0, batch.length);
    ctrl[CTRL_NEXT] = i;
    if (Date.now() - lastReport > 1000) {
      lastReport = Date.now();
      post({ t: 'progress', done: i, blocks: seen.size, ...stats });
    }
  }
  post({ t: 'done', done: w.end, blocks: seen.size, ...stats, profile: JSON.stringify({ ...prof, heapMb: Math.round(process.memoryUsage().heapUsed / 1e6) }) });
}

// The engine imports this module's constants too; only a worker started by it runs.
if (!isMainThread && (workerData as WorkerInput | null)?.shared) main(workerData as WorkerInput);
