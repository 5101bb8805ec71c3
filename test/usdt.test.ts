import t from 'tap';
import { readFileSync } from 'node:fs';
import {
  loadCollectionSpec, Collection, attachUsdt, findUsdtSites, parseUsdtArgs, openBinary, encodeUsdtSpec, autoAttachUprobe,
  TsbpfError, type Link, type ProgramSpec,
} from '../src/index.js';
import { obj, fdCount } from './helpers/env.js';
import { compilers, buildTarget, Target } from './helpers/uprobe-target.js';

const ccs = compilers();
if (ccs.length === 0) t.test('USDT attach', { skip: 'neither cc nor clang-19 is installed: cannot compile the native fixture' }, (t) => t.end());

const spec = loadCollectionSpec(obj('uprobe_test.o'));
const num = (coll: Collection, name: string): number => Number(coll.variables[name].value as bigint);
const s64s = (coll: Collection, name: string, n: number): bigint[] => {
  const b = coll.variables[name].value as Buffer;
  return Array.from({ length: n }, (_, i) => b.readBigInt64LE(i * 8));
};
const asArray = (l: Link | Link[]): Link[] => (Array.isArray(l) ? l : [l]);

t.test('USDT argument specs', (t) => {
  const args = parseUsdtArgs('-4@%edi 8@-16(%rbp) -4@$5 1@%r8b 8@(%rax) -8@$-0x10 2@0x10(%r12) 4@%eax');
  t.same(args.map((a) => [a.kind, a.size, a.signed]), [
    ['reg', 4, true], ['mem', 8, false], ['const', 4, true], ['reg', 1, false], ['mem', 8, false], ['const', 8, true], ['mem', 2, false], ['reg', 4, false],
  ]);
  t.same(args.map((a) => a.regOffset), [112, 32, undefined, 72, 80, undefined, 24, 80], 'pt_regs offsets: rdi, rbp, -, r8, rax, -, r12, rax');
  t.same(args.map((a) => a.value), [0n, -16n, 5n, 0n, 0n, 2n ** 64n - 16n, 16n, 0n]);
  t.same(parseUsdtArgs(''), []);
  t.throws(() => parseUsdtArgs('4@sym(%rip)'), { name: 'TsbpfError', message: /"4@sym\(%rip\)" has an operand form/ });
  t.throws(() => parseUsdtArgs('3@%eax'), { name: 'TsbpfError', message: /size 3/ });
  t.throws(() => parseUsdtArgs('4@%xmm0'), { name: 'TsbpfError', message: /unknown register %xmm0/ });
  t.throws(() => parseUsdtArgs('garbage'), { name: 'TsbpfError', message: /SIZE@OPERAND/ });
  t.throws(() => parseUsdtArgs('4@%w0', 183), { name: 'TsbpfError', message: /x86_64 only/ });
  const enc = encodeUsdtSpec(args.slice(0, 2), 9n);
  t.equal(enc.length, 208, 'struct tsbpf_usdt_spec is 208 bytes');
  t.equal(enc.readUInt32LE(8), 1, 'kind reg');
  t.equal(enc.readInt16LE(12), 112);
  t.equal(enc[14], 1, 'signed');
  t.equal(enc[15], 32, 'shift for 4 bytes');
  t.equal(enc.readBigInt64LE(16), -16n, 'memory displacement');
  t.equal(enc.readBigUInt64LE(192), 9n, 'cookie');
  t.equal(enc.readUInt16LE(200), 2, 'arg count');
  t.throws(() => encodeUsdtSpec(Array(13).fill(args[0])), TsbpfError);
  t.end();
});

for (const cc of ccs) {
  t.test(`USDT with the fixture built by ${cc}`, async (t) => {
    const built = buildTarget(cc);
    t.teardown(built.cleanup);
    const BIN = built.path;

    t.test('the notes: two sites, semaphore as a file offset, register/constant/memory operands', (t) => {
      const sites = findUsdtSites(BIN, 'tsbpf_fx', 'tick');
      t.equal(sites.length, 2);
      const elf = openBinary(BIN);
      const probes = elf.section('.probes')!;
      for (const s of sites) {
        t.equal(s.semaphore, probes.addr, 'the semaphore is the .probes variable');
        t.equal(s.semaphoreOffset, probes.offset, 'and its file offset comes through the data segment');
        t.equal(s.args.length, 4);
        t.equal(readFileSync(BIN)[s.offset], 0x90, 'the probe address is the nop');
      }
      t.not(sites[0].semaphoreOffset, Number(sites[0].semaphore), 'address and file offset differ (PT_LOAD adjustment matters)');
      const kinds = new Set(sites.flatMap((s) => s.args.map((a) => a.kind)));
      t.ok(kinds.has('const') && kinds.has('mem'), `operands: ${sites.map((s) => s.argSpec).join(' | ')}`);
      if (cc === 'cc') t.ok(kinds.has('reg'), 'gcc -O0 passes some arguments in registers');
      t.same(sites[1].args.map((a) => [a.size, a.signed]), [[2, true], [1, false], [4, false], [8, true]]);
      t.same(findUsdtSites(BIN).length, 2);
      t.same(findUsdtSites(BIN, 'other').length, 0);
      t.end();
    });

    t.test('attach: semaphore raised only while attached, arguments decoded per site, cookie, detach', async (t) => {
      using coll = new Collection(spec, { programs: ['on_tick'] });
      const p = new Target(BIN);
      let late: Target | undefined;
      try {
        t.equal(await p.send('sema'), '0', 'semaphore 0 before attach');
        t.equal(await p.send('usdt 3'), '0');
        t.equal(num(coll, 'tick_calls'), 0, 'the probe is skipped while the semaphore is 0');

        const links = asArray(attachUsdt(coll.programs.on_tick, { binary: BIN, provider: 'tsbpf_fx', name: 'tick', cookie: 42n }));
        t.equal(links.length, 2, 'one link a site');
        t.match(links[0].target, /tsbpf_fx:tick@0x[0-9a-f]+$/);
        t.ok(Number(await p.send('sema')) > 0, 'semaphore raised in a running process');
        late = new Target(BIN);
        t.ok(Number(await late.send('sema')) > 0, 'and in a process started after the attach');

        await p.send('usdt 3');
        t.equal(num(coll, 'tick_calls'), 2, 'both sites fired');
        const cnt = s64s(coll, 'tick_cnt', 2);
        const err = s64s(coll, 'tick_err', 2);
        t.same(cnt, [4n, 4n], 'usdt_arg_cnt');
        t.same(err, [0n, 0n], 'usdt_arg returned 0 for every argument');
        const args = s64s(coll, 'tick_args', 8);
        t.same(args.slice(0, 3), [-4n, 7n, 0x123456789n * 3n], 'site 1: negative int, constant, 64-bit stack value');
        t.ok(args[3] > 4096n, 'site 1: a pointer');
        const label = coll.variables.tick_label.value as Buffer;
        t.equal(label.subarray(0, label.indexOf(0)).toString(), 'tick-label', 'the string the pointer argument points to');
        t.same(args.slice(4, 8), [-900n, 203n, 4000000000n, -5000000000n], 'site 2: short, unsigned char, unsigned int, negative long long');
        t.equal(num(coll, 'tick_cookie'), 42, 'usdt_cookie');
        t.equal([...coll.maps.tsbpf_usdt_spec.keys()].length, 2, 'one spec a site');

        for (const l of links) l.close();
        t.equal(await p.send('sema'), '0', 'semaphore back to 0 after close');
        t.equal(await late.send('sema'), '0');
        t.equal([...coll.maps.tsbpf_usdt_spec.keys()].length, 0, 'specs removed');
        await p.send('usdt 3');
        t.equal(num(coll, 'tick_calls'), 2, 'detached: no more hits');
      } finally {
        await p.quit();
        await late?.quit();
      }
    });

    t.test('pid filter and auto-attach from usdt/BINARY:PROVIDER:NAME', async (t) => {
      using coll = new Collection(spec, { programs: ['on_tick'] });
      const a = new Target(BIN);
      const b = new Target(BIN);
      try {
        await a.send('sema');
        await b.send('sema');
        const section = `usdt/${BIN}:tsbpf_fx:tick`;
        const ps: ProgramSpec = { ...spec.programs.on_tick, section, attachTo: section.slice(5) };
        const links = asArray(autoAttachUprobe(coll.programs.on_tick, ps, { pid: a.pid })!);
        t.equal(links.length, 2);
        t.ok(Number(await a.send('sema')) > 0, 'filtered process: semaphore raised');
        // The kernel raises a semaphore in every process that maps the file; the filter applies to hits.
        await b.send('usdt 1');
        t.equal(num(coll, 'tick_calls'), 0, 'the other process is not counted');
        await a.send('usdt 1');
        t.equal(num(coll, 'tick_calls'), 2);
        t.same(s64s(coll, 'tick_args', 1), [-2n]);
        for (const l of links) l.close();
      } finally {
        await a.quit();
        await b.quit();
      }
    });

    t.test('errors: unknown probe, binary without notes, non-kprobe program; no fd leak', (t) => {
      const before = fdCount();
      {
        using coll = new Collection(spec, { programs: ['on_tick'] });
        t.throws(() => attachUsdt(coll.programs.on_tick, { binary: BIN, provider: 'tsbpf_fx', name: 'nope' }), {
          name: 'TsbpfError',
          message: /attach "on_tick" to USDT tsbpf_fx:nope in .*: .* has no such USDT probe \(it has tsbpf_fx:tick\)/,
        });
        t.throws(() => attachUsdt(coll.programs.on_tick, { binary: 'libc.so.6', provider: 'nope', name: 'nope' }), { message: /has no such USDT probe/ });
        t.throws(() => attachUsdt(coll.programs.on_tick, { binary: '/nonexistent', provider: 'a', name: 'b' }), { name: 'TsbpfError', message: /not found/ });
        for (let i = 0; i < 5; i++) for (const l of asArray(attachUsdt(coll.programs.on_tick, { binary: BIN, provider: 'tsbpf_fx', name: 'tick' }))) l.close();
      }
      {
        using tp = new Collection(loadCollectionSpec(obj('links_test.o')), { programs: ['prog_a'] });
        t.throws(() => attachUsdt(tp.programs.prog_a, { binary: BIN, provider: 'tsbpf_fx', name: 'tick' }), { message: /not BPF_PROG_TYPE_KPROBE.*SEC\("usdt"\)/ });
      }
      t.equal(fdCount(), before, 'no fd leaked (spec map handles included)');
      t.end();
    });
    t.end();
  });
}
