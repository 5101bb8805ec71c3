import t from 'tap';
import { loadCollectionSpec, Collection, Program, TestRunFlags, enableStats, statsEnabledBySysctl } from '../src/index.js';
import { onlineCpus } from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('tracing_test.o'));
const XDP_DROP = 1;
const XDP_TX = 3;
const packet = () => Buffer.alloc(64, 0x11);
const v = (coll: Collection, name: string) => BigInt(coll.variables[name].value as bigint);

t.test('run(): data in and out, a dataOut size, repeat and the reported duration', (t) => {
  using coll = new Collection(spec, { programs: ['xdp_rewrite'] });
  const prog = coll.programs.xdp_rewrite;
  const r = prog.run({ data: packet() });
  t.equal(r.retval, XDP_TX);
  t.equal(r.dataOut?.length, 64, 'the packet comes back at its size');
  t.equal(r.dataOut?.[0], 0xab, 'rewritten by the program');
  t.equal(r.dataOut?.[1], 0x11);
  t.equal(typeof r.duration, 'number');
  t.equal(prog.run({ data: packet(), dataOutSize: 64 }).dataOut?.length, 64, 'an exact dataOutSize fits');
  t.throws(() => prog.run({ data: packet(), dataOutSize: 16 }), { name: 'BpfError', errno: 'ENOSPC', message: /raise dataOutSize/ }, 'too small: ENOSPC, said plainly');
  t.throws(() => prog.run({ data: Buffer.alloc(4) }), { name: 'BpfError', errno: 'EINVAL' }, 'XDP test runs need at least an Ethernet header');
  const before = v(coll, 'xdp_runs');
  const many = prog.run({ data: packet(), repeat: 20000 });
  t.equal(v(coll, 'xdp_runs') - before, 20000n, 'repeat runs it that many times');
  t.ok(many.duration > 0, `average duration per run: ${many.duration} ns`);
  t.throws(() => prog.run({ repeat: -1 }), TypeError);
  t.throws(() => prog.run({ data: 'x' as never }), TypeError);
  t.end();
});

t.test('run(): ctx in and out (a tc program increments skb->mark)', (t) => {
  using coll = new Collection(spec, { programs: ['tc_mark'] });
  // struct __sk_buff up to priority: len, pkt_type, mark (offset 8), ..., priority (offset 32).
  const ctx = Buffer.alloc(40);
  ctx.writeUInt32LE(41, 8);
  ctx.writeUInt32LE(7, 32);
  t.throws(() => coll.programs.tc_mark.run({ data: packet(), ctx, ctxOutSize: 40 }), { errno: 'ENOSPC', message: /ctxOutSize/ },
    'ctx out must hold the whole struct __sk_buff');
  const r = coll.programs.tc_mark.run({ data: packet(), ctx, ctxOutSize: 512 });
  t.equal(r.retval, 64, 'returns skb->len');
  t.ok(r.ctxOut!.length >= 40 && r.ctxOut!.length < 512, `ctx out is cut to the kernel's size (${r.ctxOut?.length})`);
  t.equal(r.ctxOut?.readUInt32LE(8), 42, 'mark came back incremented');
  t.equal(r.ctxOut?.readUInt32LE(32), 7, 'priority passed through');
  t.end();
});

t.test('run(): BPF_F_TEST_RUN_ON_CPU with a cpu, for a raw_tp program', (t) => {
  using coll = new Collection(spec, { programs: ['raw_on_cpu'] });
  const prog = coll.programs.raw_on_cpu;
  const args = Buffer.alloc(16);
  args.writeBigUInt64LE(77n, 0);
  for (const cpu of [onlineCpus()[0], onlineCpus()[onlineCpus().length - 1]]) {
    const r = prog.run({ ctx: args, cpu });
    t.equal(r.retval, 77, 'the program got its context');
    t.equal(Number(coll.variables.ran_on_cpu.value), cpu, `ran on CPU ${cpu}`);
  }
  const r = prog.run({ ctx: args, flags: TestRunFlags.onCpu, cpu: 0 });
  t.equal(r.retval, 77, 'explicit flag works too');
  t.end();
});

t.test('run(): live XDP frames with a batch size', (t) => {
  using coll = new Collection(spec, { programs: ['xdp_count_drop'] });
  const prog = coll.programs.xdp_count_drop;
  const r = prog.run({ data: packet(), flags: TestRunFlags.xdpLiveFrames, repeat: 100, batchSize: 16 });
  t.equal(r.retval, 0, 'live mode reports no verdict');
  t.equal(v(coll, 'live_runs'), 100n, 'every frame ran the program');
  t.equal(r.dataOut, undefined, 'no data back in live mode');
  t.throws(() => prog.run({ data: packet(), flags: TestRunFlags.xdpLiveFrames, dataOutSize: 64 }), TypeError);
  t.throws(() => prog.run({ data: packet(), batchSize: 16 }), TypeError, 'batchSize only with live frames');
  t.equal(prog.run({ data: packet() }).retval, XDP_DROP);
  t.end();
});

t.test('info(): translated and JITed code, function lengths, line addresses', (t) => {
  using coll = new Collection(spec, { programs: ['xdp_with_verdict'] });
  const prog = coll.programs.xdp_with_verdict;
  const info = prog.info();
  t.equal(info.name, 'xdp_with_verdic', 'kernel names are cut at 15 characters');
  t.equal(prog.xlated().length, info.xlatedInsns * 8);
  t.equal(info.funcInfoCount, 2, 'the program and its global function');
  t.ok(info.lineInfoCount > 0);
  t.equal(info.gplCompatible, true);
  const j = prog.jitedInfo();
  if (info.jitedBytes === 0) {
    t.same(j.image, Buffer.alloc(0), 'not JITed: no image');
  } else {
    t.equal(info.jitedFuncs, 2);
    t.equal(j.funcLens.length, 2);
    t.equal(j.funcLens.reduce((a, b) => a + b, 0), info.jitedBytes, 'function lengths add up to the image');
    if (j.image.length) {
      t.equal(prog.jited().length, info.jitedBytes, 'the JITed image');
      t.equal(j.ksyms.length, 2);
      t.ok(j.ksyms.every((a) => a > 0n), 'function addresses');
      t.equal(j.lineAddrs.length, info.lineInfoCount, 'one JITed address per line_info record');
    } else {
      t.comment('kernel.kptr_restrict hides JITed code and addresses');
    }
  }
  using again = Program.fromId(info.id);
  t.same(again.xlated(), prog.xlated(), 'fromId opens the same program');
  t.end();
});

t.test('run counts: enableStats() turns them on until closed', { skip: statsEnabledBySysctl() && 'kernel.bpf_stats_enabled=1: statistics are always on' }, (t) => {
  const before = fdCount();
  {
    using coll = new Collection(spec, { programs: ['xdp_rewrite'] });
    const prog = coll.programs.xdp_rewrite;
    prog.run({ data: packet(), repeat: 5 });
    t.same(prog.stats(), { runCount: 0n, runTimeNs: 0n, recursionMisses: 0n }, 'off by default');
    {
      using stats = enableStats();
      t.notOk(stats.closed);
      prog.run({ data: packet(), repeat: 10 });
      const s = prog.stats();
      t.equal(s.runCount, 10n, 'every test run counted');
      t.ok(s.runTimeNs > 0n, `run time ${s.runTimeNs} ns`);
      t.equal(s.recursionMisses, 0n);
      t.equal(prog.info().runCount, 10n, 'info() has them too');
    }
    prog.run({ data: packet(), repeat: 10 });
    t.equal(prog.stats().runCount, 10n, 'not counted after the handle closed');
  }
  t.equal(fdCount(), before, 'the stats fd was closed');
  t.end();
});

t.test('errors name the program', (t) => {
  using coll = new Collection(spec, { programs: ['raw_on_cpu'] });
  t.throws(() => coll.programs.raw_on_cpu.run({ data: packet() }), { name: 'BpfError', message: /program "raw_on_cpu" \(RAW_TRACEPOINT\): test run/ });
  t.end();
});
