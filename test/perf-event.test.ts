import t from 'tap';
import { loadCollectionSpec, setVariable, Collection, attachPerfEvent, autoAttachTracing, autoAttachTracingSupport, PerfSoftware, Link } from '../src/index.js';
import { onlineCpus, PERF_TYPE, BPF_LINK_TYPE } from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('tracing_test.o'));
setVariable(spec, 'target_tgid', process.pid);

/**
 * Burn `ms` of this process's CPU time (not wall time: on a loaded machine 200 ms of wall time may be
 * 60 ms on a CPU, and the samplers count CPU time). Gives up after 50× `ms` of wall time.
 */
function spin(ms: number): void {
  const start = process.cpuUsage();
  const giveUp = Date.now() + ms * 50;
  let x = 0;
  for (;;) {
    for (let i = 0; i < 10_000; i++) x += Math.sqrt(x + 1);
    const used = process.cpuUsage(start);
    if ((used.user + used.system) / 1000 >= ms || Date.now() > giveUp) break;
  }
}

t.test('a cpu-clock sampler on every CPU counts samples while we spin', (t) => {
  const before = fdCount();
  {
    using coll = new Collection(spec, { programs: ['on_sample'] });
    const samples = () => Number(coll.variables.samples.value);
    const links = attachPerfEvent(coll.programs.on_sample, { cpu: 'all', sampleFreq: 1000 });
    t.equal(links.length, onlineCpus().length, 'one link per online CPU');
    t.ok(links.every((l) => l instanceof Link && l.kind === 'perf_event'));
    t.equal(links[0].info().type, BPF_LINK_TYPE.PERF_EVENT, 'a real perf_event bpf_link');
    spin(300);
    const n = samples();
    t.ok(n >= 30, `≥ 30 samples of this process in 300 ms at 1000 Hz (got ${n})`);
    for (const l of links) l.close();
    const after = samples();
    spin(100);
    t.equal(samples(), after, 'no samples once the links are closed');
  }
  t.equal(fdCount(), before, 'perf events and links closed');
  t.end();
});

t.test('one CPU, a sample period, a task-bound event', (t) => {
  using coll = new Collection(spec, { programs: ['on_sample'] });
  const samples = () => Number(coll.variables.samples.value);
  // Per task, any CPU: follows this thread wherever it runs. A 1 ms period of the task clock.
  {
    using link = attachPerfEvent(coll.programs.on_sample, { pid: process.pid, type: PERF_TYPE.SOFTWARE, config: PerfSoftware.taskClock, samplePeriod: 1_000_000n });
    t.ok(link instanceof Link);
    spin(200);
    t.ok(samples() >= 20, `task-clock every 1 ms of our CPU time: ${samples()} samples in 200 ms`);
  }
  const cpu = onlineCpus()[0];
  using one = attachPerfEvent(coll.programs.on_sample, { cpu, sampleFreq: 99 });
  t.match(one.target, new RegExp(`cpuClock cpu ${cpu}`));
  t.throws(() => attachPerfEvent(coll.programs.on_sample, { sampleFreq: 10, samplePeriod: 10 }), TypeError);
  t.throws(() => attachPerfEvent(coll.programs.on_sample, { cpu: -1 }), TypeError, 'any CPU needs a pid');
  t.end();
});

t.test('perf_event sections auto-attach only with an event', (t) => {
  using coll = new Collection(spec, { programs: ['on_sample'] });
  t.match(autoAttachTracingSupport(spec.programs.on_sample), /need a sampling event/);
  t.throws(() => autoAttachTracing(coll.programs.on_sample, spec.programs.on_sample), /need a sampling event/);
  const links = autoAttachTracing(coll.programs.on_sample, spec.programs.on_sample, { perfEvent: { cpu: 'all', sampleFreq: 1000 } });
  t.ok(Array.isArray(links));
  spin(100);
  t.ok(Number(coll.variables.samples.value) > 0);
  for (const l of links as Link[]) l.close();
  t.end();
});
