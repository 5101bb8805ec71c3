// Command line of the fuzzer:
//   node --import=@tapjs/typescript/import fuzz/run.ts [--inputs N] [--targets elf,btf,btf-ext,core]
//        [--seed S] [--jobs J] [--budget-ms MS] [--corpus DIR] [--batch B] [--no-coverage] [--crash-dir DIR]
// Inputs are split evenly across the targets; targets run one after the other, each on J workers.
// Exits 1 when any input crashed or hung.

import { parseArgs } from 'node:util';
import { formatReport, fuzz, type FuzzReport } from './engine.js';
import { TARGET_NAMES, type TargetName } from './targets.js';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '100000' },
    targets: { type: 'string', default: TARGET_NAMES.join(',') },
    seed: { type: 'string', default: '1' },
    jobs: { type: 'string', default: '2' },
    'budget-ms': { type: 'string', default: '2000' },
    corpus: { type: 'string', default: process.env.TSBPF_FUZZ_CORPUS },
    batch: { type: 'string', default: '128' },
    'no-coverage': { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
    'crash-dir': { type: 'string' },
  },
});

const targets = values.targets.split(',').map((s) => s.trim()).filter(Boolean) as TargetName[];
for (const t of targets) {
  if (!TARGET_NAMES.includes(t)) {
    console.error(`unknown target ${t} (known: ${TARGET_NAMES.join(', ')})`);
    process.exit(2);
  }
}
const total = Number(values.inputs);
const reports: FuzzReport[] = [];
for (const [k, target] of targets.entries()) {
  // Spread the remainder over the first targets so the total is exact.
  const inputs = Math.floor(total / targets.length) + (k < total % targets.length ? 1 : 0);
  const r = await fuzz({
    target,
    inputs,
    seed: Number(values.seed),
    jobs: Number(values.jobs),
    budgetMs: Number(values['budget-ms']),
    corpusDir: values.corpus || undefined,
    batch: Number(values.batch),
    coverage: !values['no-coverage'],
    crashDir: values['crash-dir'],
    onProgress: values.quiet ? undefined : (line) => console.error(line),
  });
  reports.push(r);
  console.log(formatReport(r));
  if (r.wrappedSample) console.log(`  first wrapped foreign error: ${r.wrappedSample}`);
  for (const f of [...r.crashes, ...r.hangs].slice(0, 10)) {
    console.log(`  ${f.kind} at input ${f.index}${f.file ? ` -> ${f.file}` : ''}: ${f.error.split('\n')[0]}`);
  }
}
const bad = reports.reduce((n, r) => n + r.crashes.length + r.hangs.length, 0);
const execs = reports.reduce((n, r) => n + r.inputs, 0);
const ms = reports.reduce((n, r) => n + r.ms, 0);
console.log(`total: ${execs} inputs in ${(ms / 1000).toFixed(1)} s, ${bad} crashes/hangs`);
process.exit(bad > 0 ? 1 : 0);
