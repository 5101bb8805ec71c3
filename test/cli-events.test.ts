// `tsbpf load OBJ --attach` streaming ring buffer / perf event records, and `tsbpf run runqslower`.
// Each CLI process spends ~10 s compiling TypeScript, so they are all started at once, up front, and each
// subtest then works with its own process.
import t from 'tap';
import { loadCollectionSpec } from '../src/index.js';
import { rawSyscall, NR } from '../src/syscall/native.js';
import { obj } from './helpers/env.js';
import { startCli, makeLoad, type Cli } from './helpers/cli.js';

const start = startCli;

const getpid = (n: number) => {
  for (let i = 0; i < n; i++) rawSyscall(NR.getpid);
};

const ringbuf = obj('ringbuf_test.o');
const runqslower = obj('runqslower.o');
const me = String(process.pid);

// All started now; each subtest takes its own.
const table = start(['load', ringbuf, '--attach', '--event', 'rb=rec16', '--set', `target_tgid=${me}`]);
const json = start(['load', ringbuf, '--attach', '--event', 'rb=rec16', '--set', `target_tgid=${me}`, '--json']);
const slowLoad = start(['load', runqslower, '--attach', '--set', 'min_us=1']);
const slowRun = start(['run', 'runqslower', '1', '--duration', '3']);
// The bundled example's load has to be busy while it traces: start it as soon as it prints its header.
let stopSlowRunLoad: (() => void) | undefined;
slowRun.waitFor(/^TIME +COMM/m).then(() => (stopSlowRunLoad = makeLoad(3)), () => {});
void slowRun.exit.then(() => stopSlowRunLoad?.());
const badEvent = start(['load', ringbuf, '--attach', '--event', 'rb=nosuch']);
const runHelp = start(['run', '--help']);

t.teardown(() => {
  stopSlowRunLoad?.();
  for (const c of [table, json, slowLoad, slowRun, badEvent, runHelp]) c.child.kill('SIGKILL');
});

/** At least `n` lines of `s` match `re` (not a global regexp). */
const lines = (re: RegExp, n: number) => (s: string) => s.split('\n').filter((l) => re.test(l)).length >= n;

const LINE_RB = /^(\d\d:\d\d:\d\d) rb +(\d+) +(\d+) +(\d+)$/gm;

t.test('load --attach --event rb=rec16: a header, then one decoded line per record, until SIGINT', async (t) => {
  await table.waitFor(/Hit Ctrl-C/);
  await table.waitFor(/^TIME +MAP +SEQ +KIND +COOKIE$/m);
  t.match(table.stdout, /read {3}rb \(ringbuf\) as struct rec16/);
  t.match(table.stdout, /read {3}rb2 \(ringbuf\) as raw bytes \(hex\)/);
  t.match(table.stdout, /^TIME +MAP DATA$/m, 'rb2 has no type: hex, its own header');
  getpid(5);
  await table.waitFor(lines(/^\d\d:\d\d:\d\d rb /, 5), 'stdout', 20_000);
  const code = await table.interrupt();
  t.equal(code, 0, 'exit code 0', { stderr: table.stderr.slice(-2000) });
  const rows = [...table.stdout.matchAll(LINE_RB)];
  t.ok(rows.length >= 5, `${rows.length} records printed`);
  t.same(rows.map((r) => Number(r[2])), rows.map((_, i) => i), 'SEQ counts up from 0: every record, in order');
  t.ok(rows.every((r) => r[3] === '16'), 'KIND 16');
  t.ok(rows.every((r) => BigInt(r[4]) >> 32n === BigInt(process.pid)), 'COOKIE = pid_tgid of this process');
  // columns line up under the header: SEQ right-aligned to the end of its header cell, etc.
  const header = /^TIME +MAP +SEQ +KIND +COOKIE$/m.exec(table.stdout)![0];
  const first = rows[0][0];
  t.equal(first.length, header.length, 'a row is as wide as the header');
  t.equal(/^\S+ \S+ +\d+/.exec(first)![0].length, header.indexOf('SEQ') + 3, 'SEQ right-aligned under its header');
  t.match(table.stdout, /SIGINT: detaching/);
  t.match(table.stdout, /detached 1 link\(s\), closed all maps and programs \(0 tsbpf fd\(s\) still open\)/);
});

t.test('load --attach --json: stdout is JSON lines only, bigints as numbers when safe', async (t) => {
  await json.waitFor(/Hit Ctrl-C/, 'stderr');
  getpid(3);
  await json.waitFor(lines(/"map":"rb"/, 3), 'stdout', 20_000);
  const code = await json.interrupt();
  t.equal(code, 0, 'exit code 0', { stderr: json.stderr.slice(-2000) });
  const out = json.stdout.split('\n').filter((l) => l !== '');
  const parsed = out.map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return l;
    }
  });
  t.same(parsed.filter((p) => typeof p === 'string'), [], 'every stdout line parses');
  const recs = parsed as Record<string, unknown>[];
  t.ok(recs.length >= 3, `${recs.length} records`);
  t.ok(recs.every((r) => r.map === 'rb' && typeof r.time === 'string' && /^\d\d:\d\d:\d\d$/.test(r.time as string)), 'time and map');
  t.same(recs.map((r) => r.seq), recs.map((_, i) => i), 'seq as numbers, from 0');
  t.ok(recs.every((r) => r.kind === 16), 'kind 16');
  t.ok(recs.every((r) => (typeof r.cookie === 'number' || typeof r.cookie === 'string') && BigInt(r.cookie) >> 32n === BigInt(process.pid)), 'cookie (u64) as a number when safe, else a string');
  t.ok(recs.every((r) => Number.isSafeInteger(Number(r.cookie)) === (typeof r.cookie === 'number')), 'numbers only when safe');
  t.match(json.stderr, /PROGRAM +TYPE/, 'the tables go to stderr');
  t.match(json.stderr, /\(0 tsbpf fd\(s\) still open\)/);
});

t.test('load bpf/runqslower.o --attach --set min_us=1: perf event array records, one line each', async (t) => {
  const hasEvent = loadCollectionSpec(runqslower).btf?.tryFindType('event', 'struct') !== undefined;
  await slowLoad.waitFor(/Hit Ctrl-C/);
  const stop = makeLoad(2);
  try {
    await slowLoad.waitFor(lines(/^\d\d:\d\d:\d\d /, 5), 'stdout', 20_000);
  } finally {
    stop();
  }
  const code = await slowLoad.interrupt();
  t.equal(code, 0, 'exit code 0', { stderr: slowLoad.stderr.slice(-2000) });
  t.match(slowLoad.stdout, /read {3}events \(perf_event_array\)/);
  t.match(slowLoad.stdout, /\(0 tsbpf fd\(s\) still open\)/);
  const events = slowLoad.stdout.split('\n').filter((l) => /^\d\d:\d\d:\d\d /.test(l));
  t.ok(events.length >= 5, `${events.length} events`);
  t.ok(hasEvent, 'bpf/runqslower.o carries struct event in its BTF');
  t.match(slowLoad.stdout, /^TIME +TASK +PREV_TASK +DELTA_US +PID +PREV_PID$/m, 'a header naming struct event\'s members');
  const row = /^\d\d:\d\d:\d\d (.{15}) (.{15}) +(\d+) +(\d+) +(\d+)$/;
  const bad = events.filter((l) => !row.test(l));
  t.same(bad.slice(0, 5), [], 'every line: TASK PREV_TASK DELTA_US PID PREV_PID');
  t.ok(events.every((l) => BigInt(row.exec(l)?.[3] ?? 0) > 1n), 'DELTA_US > min_us');
});

t.test('run runqslower 1 --duration 3: the classic header and columns, exit 0', async (t) => {
  const code = await slowRun.exit;
  t.equal(code, 0, 'exit code 0', { stderr: slowRun.stderr.slice(-2000) });
  const out = slowRun.stdout.split('\n');
  t.equal(out[0], 'Tracing run queue latency higher than 1 us');
  t.equal(out[1], 'TIME     COMM             TID           LAT(us)');
  const rows = out.slice(2).filter((l) => l !== '');
  t.ok(rows.length >= 1, `${rows.length} events`);
  const bad = rows.filter((l) => !/^\d\d:\d\d:\d\d \S.{0,15}\s+\d+\s+\d+$/.test(l));
  t.same(bad.slice(0, 5), [], 'every line: TIME COMM TID LAT(us)');
  // %-8s %-16s %-6d %14llu: the latency ends at the end of the LAT(us) header, the TID starts under TID
  t.ok(rows.every((l) => l.length >= out[1].length && l[8 + 1 + 16] === ' ' && /\d/.test(l[8 + 1 + 16 + 1])), 'seed column layout');
});

t.test('errors: unknown event type; run --help lists the examples', async (t) => {
  t.equal(await badEvent.exit, 1);
  t.match(badEvent.stderr, /--event rb=nosuch: no struct "nosuch"/);
  t.equal(await runHelp.exit, 0);
  t.match(runHelp.stdout, /Usage: tsbpf run NAME/);
  t.match(runHelp.stdout, /runqslower +\S/);
});
