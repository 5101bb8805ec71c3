// `tsbpf run runqlat`: the bundled example prints the classic run-queue latency histograms (interval/count,
// -P per process), and the histogram renderer reproduces the classic tool's layout byte for byte.
// The CLI children are started at once, up front (each spends seconds compiling under load).
import t from 'tap';
import { formatLog2Hist, formatHists } from '../src/cli/histogram.js';
import { log2Histogram } from '../src/examples/runqlat.js';
import { startCli, makeLoad } from './helpers/cli.js';

const start = startCli;

// Histogram lines exactly as the classic tools print them (widths of the seed output).
const HEADER = (unit: string): RegExp => new RegExp(`^ {5}${unit} {${19 - unit.length}} : count {4}distribution$`);
const ROW = /^[ \d]{9}\d -> \d[\d ]{9} : \d[\d ]{7} \|[* ]{40}\|$/;

t.setTimeout(150_000);

// Both started now, with scheduler load for as long as either runs.
const plain = start(['run', 'runqlat', '1', '3']);
const perProcess = start(['run', 'runqlat', '-P', '1', '2']);
const stopLoad = makeLoad();
void Promise.all([plain.exit, perProcess.exit]).then(stopLoad);
t.teardown(() => {
  stopLoad();
  plain.child.kill('SIGKILL');
  perProcess.child.kill('SIGKILL');
});

t.test('the classic layout: the seed\'s histogram, line for line', (t) => {
  const slots = [1514, 729, 357, 943, 372, 0, 0, 46, 0, 0, 0, 8, 0, 0];
  const text = formatLog2Hist(slots, 'usecs');
  const want = [
    '     usecs               : count    distribution',
    '         0 -> 1          : 1514     |****************************************|',
    '         2 -> 3          : 729      |*******************                     |',
    '         4 -> 7          : 357      |*********                               |',
    '         8 -> 15         : 943      |************************                |',
    '        16 -> 31         : 372      |*********                               |',
    '       128 -> 255        : 46       |*                                       |',
    '      2048 -> 4095       : 8        |                                        |',
  ];
  const lines = text.split('\n');
  for (const w of want) t.ok(lines.includes(w), `has: ${w}`);
  t.equal(lines.at(-1), want.at(-1), 'stops after the last non-empty slot');
  t.equal(lines.length, 1 + 12, 'from slot 0 through slot 11, empty slots in between included');
  t.equal(log2Histogram(slots, 'usecs'), text, 'the example prints the same as the CLI');
  // leading empty slots skipped; msecs label; all-zero: header only
  t.same(formatLog2Hist([0, 0, 3, 1], 'msecs').split('\n'), [
    '     msecs               : count    distribution',
    '         4 -> 7          : 3        |****************************************|',
    '         8 -> 15         : 1        |*************                           |',
  ]);
  t.equal(formatLog2Hist([0, 0], 'usecs'), '     usecs               : count    distribution');
  // several keys: each headed with its key (and comm)
  const two = formatHists([
    { key: Buffer.from([1, 0, 0, 0]), slots: [1], total: 1, comm: 'init' },
    { key: Buffer.from([2, 0, 0, 0]), slots: [0, 2], total: 2, comm: 'kthreadd' },
  ], 'usecs', 'pid');
  t.match(two, /^\npid = 1 init\n {5}usecs/);
  t.match(two, /\n\npid = 2 kthreadd\n {5}usecs {15}: count {4}distribution\n {9}2 -> 3 /);
  t.end();
});

t.test('tsbpf run runqlat 1 3: three one-second histograms in the classic format', async (t) => {
  const code = await plain.exit;
  t.equal(code, 0, plain.stderr);
  const lines = plain.stdout.split('\n');
  t.equal(lines[0], 'Tracing run queue latency... Hit Ctrl-C to end.');
  const headers = lines.filter((l) => HEADER('usecs').test(l));
  t.equal(headers.length, 3, `three histograms:\n${plain.stdout}`);
  const rows = lines.filter((l) => l.includes(' -> '));
  t.ok(rows.length >= 3, `${rows.length} rows`);
  t.same(rows.filter((l) => !ROW.test(l)), [], 'every row has the classic widths');
  t.notOk(/^pid = /m.test(plain.stdout), 'no per-process headers without -P');
  // each histogram: its rows right after its header, a full bar on the largest count
  const blocks = plain.stdout.split(/\n(?= {5}usecs)/).slice(1);
  t.equal(blocks.length, 3);
  for (const b of blocks) t.match(b, /\|\*{40}\|/, 'the largest count fills the bar');
  t.equal(plain.stderr, '');
});

t.test('tsbpf run runqlat -P 1 2: one histogram per process, headed pid = PID COMM', async (t) => {
  const code = await perProcess.exit;
  t.equal(code, 0, perProcess.stderr);
  const heads = perProcess.stdout.match(/^pid = \d+ .*$/gm) ?? [];
  t.ok(heads.length >= 2, `${heads.length} processes`);
  t.ok(heads.every((h) => /^pid = [1-9]\d* [\x20-\x7e]{1,15}$/.test(h)), 'each header: pid and a printable comm');
  // the per-process histograms follow their header directly
  t.match(perProcess.stdout, /\npid = \d+ [^\n]+\n {5}usecs {15}: count {4}distribution\n[ \d]{9}\d -> /);
  const rows = perProcess.stdout.split('\n').filter((l) => l.includes(' -> '));
  t.same(rows.filter((l) => !ROW.test(l)), [], 'every row has the classic widths');
  t.ok(/^pid = \d+ sh$/m.test(perProcess.stdout) || /^pid = \d+ sleep$/m.test(perProcess.stdout) || heads.length > 2,
    'our load\'s children (sh, sleep) or several processes show up');
});
