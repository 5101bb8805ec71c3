// `tsbpf load OBJ.o`: flags generated from the object's globals (--help lists them with C types and
// defaults; they set the globals before load), and histogram maps printed while attached (--interval,
// --count) without any JavaScript of ours. The CLI children are started at once, up front.
import t from 'tap';
import { join } from 'node:path';
import { obj } from './helpers/env.js';
import { loadCollectionSpec, getVariable } from '../src/index.js';
import { applyGlobalFlags, globalFlags, normalizeBoolArgs, parseFlagValue, UsageError } from '../src/cli/globals.js';
import { startCli, makeLoad } from './helpers/cli.js';

const start = startCli;

// Histogram lines exactly as the classic tools print them (widths of the seed output).
const HEADER = (unit: string): RegExp => new RegExp(`^ {5}${unit} {${19 - unit.length}} : count {4}distribution$`);
const ROW = /^[ \d]{9}\d -> \d[\d ]{9} : \d[\d ]{7} \|[* ]{40}\|$/;

t.setTimeout(150_000);

const me = String(process.pid);
const help = start(['load', obj('runqlat.o'), '--help']);
const hist = start(['load', obj('runqlat.o'), '--attach', '--interval', '1', '--count', '2']);
// Generated flags: msecs (targ_ms), one histogram per process (targ_per_process), only this process (targ_tgid).
const flagged = start(['load', obj('runqlat.o'), '--attach', '--interval', '1', '--count', '2', '--targ_ms', '--targ_per_process', '--targ_tgid', me, '--no-filter_cg']);
const unknown = start(['load', obj('runqlat.o'), '--min_us', '5']);

const stopLoad = makeLoad(1);
// This process must get scheduled for the per-process histogram: short sleeps, until the children are done.
let busy = true;
void (async () => {
  while (busy) await new Promise((r) => setTimeout(r, 2));
})();
void Promise.all([hist.exit, flagged.exit]).then(() => {
  busy = false;
  stopLoad();
});
t.teardown(() => {
  busy = false;
  stopLoad();
  for (const c of [help, hist, flagged, unknown]) c.child.kill('SIGKILL');
});

t.test('globals → flags, in process: kinds, C types, defaults, parsing', (t) => {
  const spec = loadCollectionSpec(obj('runqlat.o'));
  const flags = globalFlags(spec);
  const byName = Object.fromEntries(flags.map((f) => [f.name, f]));
  t.same(Object.keys(byName).sort(), ['filter_cg', 'targ_ms', 'targ_per_pidns', 'targ_per_process', 'targ_per_thread', 'targ_tgid']);
  t.match(byName.targ_tgid, { kind: 'int', cType: 'pid_t', defaultText: '0', section: '.rodata', readonly: true });
  t.match(byName.targ_ms, { kind: 'bool', cType: 'bool', defaultText: 'false' });
  const reserved = new Set(['attach', 'count']);
  t.same(normalizeBoolArgs(['x.o', '--targ_ms=true', '--filter_cg=0', '--targ_tgid=5'], flags, reserved), ['x.o', '--targ_ms', '--no-filter_cg', '--targ_tgid=5']);
  t.throws(() => normalizeBoolArgs(['--targ_ms=maybe'], flags, reserved), UsageError);
  applyGlobalFlags(spec, flags, { targ_ms: true, 'no-filter_cg': true, targ_tgid: '0x10' }, reserved);
  t.equal(getVariable(spec, 'targ_ms')[0], 1);
  t.equal(getVariable(spec, 'filter_cg')[0], 0);
  t.equal(getVariable(spec, 'targ_tgid').readInt32LE(0), 16);
  applyGlobalFlags(spec, flags, { targ_tgid: '-1' }, reserved);
  t.equal(getVariable(spec, 'targ_tgid').readInt32LE(0), -1, 'negative numbers (--targ_tgid=-1)');
  t.throws(() => applyGlobalFlags(spec, flags, { targ_tgid: '4294967296' }, reserved), UsageError, 'out of range: a usage error');
  t.throws(() => applyGlobalFlags(spec, flags, { targ_tgid: 'abc' }, reserved), /wants an integer \(pid_t\)/);
  t.throws(() => applyGlobalFlags(spec, flags, { targ_ms: true, 'no-targ_ms': true }, reserved), /both given/);
  t.equal(parseFlagValue({ name: 's', kind: 'string', cType: 'char[16]', section: '.rodata', readonly: true, defaultText: '""' }, 'sshd'), 'sshd');
  t.end();
});

t.test('tsbpf load OBJ --help lists the object\'s globals with C types and defaults', async (t) => {
  t.equal(await help.exit, 0, help.stderr);
  t.match(help.stdout, /Usage: tsbpf load/);
  t.match(help.stdout, /Exit codes: 0 success, 1 runtime error.*2 usage error/);
  t.match(help.stdout, /Globals of .*runqlat\.o/);
  t.match(help.stdout, /^ {2}--targ_tgid N +pid_t +default 0 +\.rodata$/m);
  for (const b of ['targ_per_process', 'targ_per_thread', 'targ_per_pidns', 'targ_ms', 'filter_cg']) {
    t.match(help.stdout, new RegExp(`^ {2}--${b}, --no-${b} +bool +default false +\\.rodata$`, 'm'), b);
  }
});

t.test('unknown flag: exit 2, one line naming the flags the object offers', async (t) => {
  t.equal(await unknown.exit, 2);
  t.match(unknown.stderr, /Unknown option '--min_us'/);
  t.match(unknown.stderr, /--targ_tgid/);
  t.match(unknown.stderr, /--targ_ms\/--no-targ_ms/);
  t.notMatch(unknown.stderr, /\n {4}at /, 'no stack trace');
});

t.test('tsbpf load runqlat.o --attach --interval 1 --count 2: histograms with no JS of ours', async (t) => {
  t.equal(await hist.exit, 0, hist.stderr);
  const lines = hist.stdout.split('\n');
  t.match(hist.stdout, /hist {3}hists: log2 histograms of 26 slots with comm, in usecs/);
  t.equal(lines.filter((l) => HEADER('usecs').test(l)).length, 2, 'two prints');
  const rows = lines.filter((l) => l.includes(' -> '));
  t.ok(rows.length >= 2, `${rows.length} rows`);
  t.same(rows.filter((l) => !ROW.test(l)), [], 'classic widths');
  t.notMatch(hist.stdout, /^pid = /m, 'one histogram (key 0xffffffff, no comm): no header');
  t.match(hist.stdout, /count: detaching/);
  t.match(hist.stdout, /\(0 tsbpf fd\(s\) still open\)/);
  // the other plain maps print as tables on exit; the cgroup array and .rodata do not
  t.match(hist.stdout, /^start \(hash, \d+ entr(y|ies)/m);
  t.notMatch(hist.stdout, /^cgroup_map \(/m);
});

t.test('generated flags set the globals: --targ_ms → msecs, --targ_per_process → pid headers, --targ_tgid → only us', async (t) => {
  t.equal(await flagged.exit, 0, flagged.stderr);
  t.match(flagged.stdout, /in msecs/);
  const heads = flagged.stdout.match(/^pid = .*$/gm) ?? [];
  t.ok(heads.length >= 1, `per-process histograms: ${heads.join(' | ')}`);
  t.ok(heads.every((h) => h.startsWith(`pid = ${me} `)), 'only this process is timed');
  t.ok(flagged.stdout.split('\n').some((l) => HEADER('msecs').test(l)), 'the unit label says msecs');
  t.notMatch(flagged.stdout, /usecs {15}:/);
});
