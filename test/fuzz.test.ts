// The parsers under the fuzzer (fuzz/): every saved crasher must now be rejected with a tsbpf error
// (regression tests), and a deterministic fuzz run across the four targets must find no crash or hang.

import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CRASH_DIR, formatReport, fuzz } from '../fuzz/engine.js';
import { replay, TARGET_NAMES, type TargetName } from '../fuzz/targets.js';

t.setTimeout(900_000);

t.test('saved crashers are rejected with tsbpf errors only', async (t) => {
  const files = existsSync(DEFAULT_CRASH_DIR) ? readdirSync(DEFAULT_CRASH_DIR).filter((f) => f.endsWith('.bin')).sort() : [];
  if (files.length === 0) t.pass('no crashers saved');
  for (const f of files) {
    const target = TARGET_NAMES.find((n) => f.startsWith(`${n}-`) && /^[0-9a-f]+\.bin$/.test(f.slice(n.length + 1)));
    if (!target) {
      t.fail(`${f}: name does not start with a target (${TARGET_NAMES.join(', ')})`);
      continue;
    }
    const start = performance.now();
    const err = replay(target, readFileSync(join(DEFAULT_CRASH_DIR, f)));
    const ms = performance.now() - start;
    t.equal(err, undefined, `${f}: only tsbpf errors escape${err ? ` (got ${(err as Error)?.stack ?? String(err)})` : ''}`);
    t.ok(ms < 2000, `${f}: replays in ${ms.toFixed(0)} ms`);
  }
});

t.test('fuzz run: no crashes or hangs', async (t) => {
  // CO-RE inputs cost several times more than the others, so they get a smaller share.
  const shares: [TargetName, number][] = [
    ['elf', 26_000],
    ['btf', 30_000],
    ['btf-ext', 34_000],
    ['core', 12_000],
  ];
  let total = 0;
  const started = Date.now();
  for (const [target, inputs] of shares) {
    const r = await fuzz({ target, inputs, seed: 0x7b9f, jobs: 2, budgetMs: 5000 });
    total += r.inputs;
    t.comment(formatReport(r));
    if (r.wrappedSample) t.comment(`  first wrapped foreign error: ${r.wrappedSample}`);
    t.equal(r.crashes.length, 0, `${target}: no crashes in ${r.inputs} inputs${r.crashes.map((c) => `\n  ${c.file ?? ''} ${c.error.split('\n')[0]}`).join('')}`);
    t.equal(r.hangs.length, 0, `${target}: no hangs (budget 5000 ms)${r.hangs.map((c) => `\n  ${c.file ?? ''}`).join('')}`);
    t.ok(r.corpus > r.seeds, `${target}: coverage guidance grew the corpus ${r.seeds} -> ${r.corpus} (${r.blocks} blocks)`);
  }
  t.ok(total >= 100_000, `${total} inputs in ${((Date.now() - started) / 1000).toFixed(0)} s`);
});
