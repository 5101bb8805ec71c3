// The bundled examples `percpu-loop` and `ringbuf-vs-perf` run and print sane output, `tsbpf run --help`
// lists every example, and a process without CAP_BPF is told so in one line. The CLI children are started at once, up front.
import t from 'tap';
import { existsSync } from 'node:fs';
import { obj } from './helpers/env.js';
import { startCli } from './helpers/cli.js';

const start = startCli;

t.setTimeout(150_000);

const percpu = start(['run', 'percpu-loop', '-n', '500', '-r', '3']);
const rings = start(['run', 'ringbuf-vs-perf', '-n', '5000']);
const list = start(['run', '--help']);
// Root without CAP_BPF / CAP_PERFMON / CAP_SYS_ADMIN (dropped from the bounding set before exec).
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
const noCaps = setpriv ? start(['load', obj('loader.o')], [setpriv, '--bounding-set=-bpf,-perfmon,-sys_admin']) : undefined;
t.teardown(() => {
  for (const c of [percpu, rings, list, noCaps]) c?.child.kill('SIGKILL');
});

t.test('tsbpf run --help lists the examples', async (t) => {
  t.equal(await list.exit, 0, list.stderr);
  for (const n of ['runqlat', 'runqslower', 'percpu-loop', 'ringbuf-vs-perf']) t.match(list.stdout, new RegExp(`^ {2}${n} +\\S`, 'm'), n);
});

t.test('percpu-loop: one row per online CPU, the per-CPU counters add up', async (t) => {
  t.equal(await percpu.exit, 0, percpu.stderr);
  const out = percpu.stdout;
  t.match(out, /^bpf_loop\(500\) x 3 run\(s\) on each of \d+ online CPU\(s\)$/m);
  const ncpu = Number(/on each of (\d+) online/.exec(out)?.[1]);
  t.match(out, /^CPU +RUNS +ITERATIONS +SUM$/m);
  const rows = [...out.matchAll(/^(\d+) +(\d+) +(\d+) +(\d+)$/gm)];
  t.equal(rows.length, ncpu, 'a row per online CPU');
  for (const r of rows) {
    t.equal(Number(r[2]), 3, `CPU ${r[1]}: 3 runs`);
    t.equal(Number(r[3]), 1500, `CPU ${r[1]}: 1500 iterations`);
    t.equal(Number(r[4]), 3 * (500 * 499) / 2, `CPU ${r[1]}: sum of 0..499, 3 times`);
  }
  t.match(out, new RegExp(`^total +${3 * ncpu} +${1500 * ncpu} +${(3 * ncpu * 500 * 499) / 2}$`, 'm'));
  t.match(out, /^ok: expected/m);
});

t.test('ringbuf-vs-perf: both transports deliver the events, with latencies', async (t) => {
  t.equal(await rings.exit, 0, rings.stderr);
  const out = rings.stdout;
  t.match(out, /^Produced 5000 getppid\(\) events/m);
  t.match(out, /^TRANSPORT +RECEIVED +LOST +CPUS +REORDERED +P50 +P99 +MAX$/m);
  const row = (name: string) => new RegExp(`^${name} +(\\d+) +(\\d+) +(\\d+) +(\\d+) +([\\d.]+) us +([\\d.]+) us +([\\d.]+) us$`, 'm').exec(out);
  const rb = row('ringbuf');
  const pf = row('perf');
  t.ok(rb && pf, out);
  if (!rb || !pf) return;
  t.equal(Number(rb[1]) + Number(rb[2]), 5000, 'ringbuf: received + lost = produced');
  t.equal(Number(pf[1]) + Number(pf[2]), 5000, 'perf: received + lost = produced');
  t.ok(Number(rb[1]) > 0 && Number(pf[1]) > 0, 'each delivered records');
  t.equal(Number(rb[4]), 0, 'ring buffer: in order');
  t.equal(Number(pf[4]), 0, 'perf: in order per CPU');
  for (const r of [rb, pf]) t.ok(Number(r[5]) <= Number(r[6]) && Number(r[6]) <= Number(r[7]), 'p50 <= p99 <= max');
});

t.test('without the capabilities: one line naming the missing one, a hint, exit 1', { skip: !noCaps && 'no setpriv' }, async (t) => {
  t.equal(await noCaps!.exit, 1, noCaps!.stdout);
  t.match(noCaps!.stderr, /^tsbpf: permission denied: bpf\(\w+\) needs CAP_BPF, which this process lacks\n/);
  t.match(noCaps!.stderr, /^hint: run as root, or grant the capabilities/m);
  t.equal(noCaps!.stderr.trim().split('\n').length, 2, 'two lines, no stack trace');
});
