import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  loadCollectionSpec, Collection, attachUprobe, attachUprobeMulti, autoAttachUprobe, autoAttachUprobeSupport, attachTracepoint,
  NativeElf, openBinary, resolveBinary, ElfError, TsbpfError, type ProgramSpec, type Link,
} from '../src/index.js';
import { BPF_LINK_TYPE } from '../src/syscall/index.js';
import { obj, fdCount } from './helpers/env.js';
import { compilers, buildTarget, Target } from './helpers/uprobe-target.js';
import { needsKernel } from './helpers/features.js';

const noMulti = needsKernel(6, 6, 'uprobe_multi links');

const ccs = compilers();
// Every test needs the native fixture: skipped (only) when there is no C compiler to build it.
const skip = ccs.length ? false : 'neither cc nor clang-19 is installed: cannot compile the native fixture';
const built = ccs.length ? buildTarget(ccs[0]) : { path: '', dir: '', cleanup: () => {} };
t.teardown(built.cleanup);
const BIN = built.path;

const spec = loadCollectionSpec(obj('uprobe_test.o'));
const num = (coll: Collection, name: string): number => Number(coll.variables[name].value as bigint);
const cstr = (coll: Collection, name: string): string => {
  const b = coll.variables[name].value as Buffer;
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString();
};
async function withTarget<T>(fn: (p: Target) => Promise<T>): Promise<T> {
  const p = new Target(BIN);
  try {
    return await fn(p);
  } finally {
    await p.quit();
  }
}

t.test('binary reader: function symbols → file offsets, library names → paths', { skip }, (t) => {
  const elf = openBinary(BIN);
  const add = elf.findFunction('fx_add');
  t.equal(add.symbol.table === '.symtab' || add.symbol.table === '.dynsym', true);
  const bytes = readFileSync(BIN).subarray(add.offset, add.offset + 4);
  t.ok(bytes[0] === 0x55 || bytes.readUInt32BE(0) === 0xf30f1efa, `fx_add starts with push %rbp or endbr64 (${bytes.toString('hex')})`);
  t.same(elf.matchFunctions('fx_multi_*').map((f) => f.name).sort(), ['fx_multi_alpha', 'fx_multi_beta']);
  t.ok(elf.segments.some((s) => s.type === 1 && s.offset !== Number(s.vaddr)), 'a PT_LOAD whose vaddr differs from its offset (the data segment)');
  const libc = resolveBinary('libc.so.6');
  t.match(basename(libc), /^libc[.-]/);
  const atoi = openBinary('libc.so.6').findFunction('atoi');
  t.ok(atoi.offset > 0);
  t.equal(openBinary('libc.so.6'), openBinary('libc.so.6'), 'parsed once while unchanged');
  t.throws(() => openBinary('libc.so.6').findFunction('definitely_not_a_libc_function'), { name: 'TsbpfError', message: /not found in .*libc/ });
  t.end();
});

t.test('uprobe: counts calls, reads arguments and the cookie; uretprobe reads the return value; close() detaches', { skip }, async (t) => {
  using coll = new Collection(spec);
  await withTarget(async (p) => {
    const entry = attachUprobe(coll.programs.on_add, { binary: BIN, symbol: 'fx_add', cookie: 0xc0ffeen });
    const ret = attachUprobe(coll.programs.on_add_ret, { binary: BIN, symbol: 'fx_add', retprobe: true });
    t.equal(entry.kind, 'uprobe');
    t.equal(ret.kind, 'uretprobe');
    t.ok(entry.isBpfLink);
    t.equal(entry.info().type, BPF_LINK_TYPE.PERF_EVENT);
    t.match(entry.target, /fx_add$/);
    t.equal(await p.send('add 40 2'), '42');
    t.equal(await p.send('add -7 3'), '-4');
    t.equal(num(coll, 'add_calls'), 2);
    t.equal(num(coll, 'add_a'), -7);
    t.equal(num(coll, 'add_b'), 3);
    t.equal(num(coll, 'add_cookie'), 0xc0ffee);
    t.equal(num(coll, 'ret_calls'), 2);
    t.equal(num(coll, 'add_ret'), -4);
    entry.close();
    ret.close();
    await p.send('add 1 1');
    t.equal(num(coll, 'add_calls'), 2, 'detached: the uprobe no longer fires');
    t.equal(num(coll, 'ret_calls'), 2, 'detached: the uretprobe no longer fires');
  });
});

t.test('pid filter: another process running the same binary is not counted', { skip }, async (t) => {
  using coll = new Collection(spec, { programs: ['on_add'] });
  const a = new Target(BIN);
  const b = new Target(BIN);
  try {
    await a.send('sema');
    await b.send('sema');
    using link = attachUprobe(coll.programs.on_add, { binary: BIN, symbol: 'fx_add', pid: a.pid });
    t.match(link.target, new RegExp(`pid ${a.pid}`));
    await b.send('add 1 2');
    await a.send('add 5 6');
    await b.send('add 3 4');
    await a.send('add 7 8');
    t.equal(num(coll, 'add_calls'), 2, 'only the calls of the filtered process');
    t.equal(num(coll, 'add_a'), 7);
  } finally {
    await a.quit();
    await b.quit();
  }
});

t.test('a shared library function by library name (libc.so.6:atoi), by hand and through the section name', { skip }, async (t) => {
  using coll = new Collection(spec, { programs: ['on_atoi'] });
  await withTarget(async (p) => {
    {
      using link = attachUprobe(coll.programs.on_atoi, { binary: 'libc.so.6', symbol: 'atoi', pid: p.pid });
      t.match(link.target, /libc.*:atoi/);
      t.equal(await p.send('libc 1234'), '1234');
      t.equal(num(coll, 'atoi_calls'), 1);
      t.equal(cstr(coll, 'atoi_arg'), '1234');
    }
    const progSpec = spec.programs.on_atoi;
    t.equal(autoAttachUprobeSupport(progSpec), undefined, 'uprobe/libc.so.6:atoi is auto-attachable');
    const auto = autoAttachUprobe(coll.programs.on_atoi, progSpec, { pid: p.pid }) as Link;
    t.equal(await p.send('libc 77'), '77');
    t.equal(num(coll, 'atoi_calls'), 2);
    t.equal(cstr(coll, 'atoi_arg'), '77');
    auto.close();
    await p.send('libc 5');
    t.equal(num(coll, 'atoi_calls'), 2, 'detached');
  });
});

t.test('uprobe_multi: a glob, a symbol list with cookies, uretprobe.multi', { skip: skip || noMulti }, async (t) => {
  using coll = new Collection(spec, { programs: ['on_multi', 'on_multi_ret', 'on_add'] });
  await withTarget(async (p) => {
    {
      using link = attachUprobeMulti(coll.programs.on_multi, { binary: BIN, symbols: 'fx_multi_*' });
      using ret = attachUprobeMulti(coll.programs.on_multi_ret, { binary: BIN, symbols: 'fx_multi_*', retprobe: true, pid: p.pid });
      t.equal(link.info().type, BPF_LINK_TYPE.UPROBE_MULTI);
      t.equal(ret.kind, 'uretprobe_multi');
      await p.send('multi');
      t.equal(num(coll, 'multi_calls'), 2, 'fx_multi_alpha and fx_multi_beta, not fx_other');
      t.equal(num(coll, 'multi_ret_calls'), 2);
      t.equal(num(coll, 'multi_ret_sum'), 2 + 4, 'their return values');
    }
    await p.send('multi');
    t.equal(num(coll, 'multi_calls'), 2, 'detached');
    {
      using link = attachUprobeMulti(coll.programs.on_multi, { binary: BIN, symbols: ['fx_multi_alpha', 'fx_multi_beta', 'fx_other'], cookies: [1n, 2n, 4n] });
      t.match(link.target, /fx_multi_alpha,fx_multi_beta,fx_other$/);
      await p.send('multi');
      t.equal(num(coll, 'multi_calls'), 5);
      t.equal(num(coll, 'multi_mask'), 7, 'each function fired with its cookie');
    }
    t.throws(() => attachUprobeMulti(coll.programs.on_multi, { binary: BIN, symbols: 'nothing_*' }), { name: 'TsbpfError', message: /no function .* matches "nothing_\*"/ });
    t.throws(() => attachUprobeMulti(coll.programs.on_multi, { binary: BIN, symbols: ['fx_add'], cookies: [1n, 2n] }), TypeError);
    const e = t.throws(() => attachUprobeMulti(coll.programs.on_add, { binary: BIN, symbols: ['fx_add'] })) as Error;
    t.match(e.message, /on_add.*EINVAL.*expected attach type BPF_TRACE_UPROBE_MULTI/s, 'a plain uprobe program is refused with the fix');
  });
});

t.test('auto-attach by section name', { skip }, async (t) => {
  using coll = new Collection(spec, { programs: ['on_add', 'on_multi'] });
  const withSection = (s: ProgramSpec, section: string): ProgramSpec => {
    const slash = section.indexOf('/');
    return { ...s, section, attachTo: slash < 0 ? '' : section.slice(slash + 1), sectionKind: section.slice(0, slash < 0 ? undefined : slash).replace(/\.s$/, '') };
  };
  const base = spec.programs.on_add;
  t.match(autoAttachUprobeSupport(base), /names no target.*attachUprobe/, 'plain SEC("uprobe") names no target');
  t.match(autoAttachUprobeSupport(spec.programs.on_tick), /usdt\/BINARY:PROVIDER:NAME/);
  t.match(autoAttachUprobeSupport(spec.programs.on_multi), /uprobe.multi\/BINARY:PATTERN/);
  t.equal(autoAttachUprobeSupport(withSection(base, 'tp/syscalls/sys_enter_getpid')), null, 'not a uprobe section');
  t.equal(autoAttachUprobe(coll.programs.on_add, withSection(base, 'kprobe/do_sys_open')), undefined);
  t.match(autoAttachUprobeSupport(withSection(base, 'uprobe/onlybinary')), /want uprobe\/BINARY:FUNCTION/);
  t.equal(autoAttachUprobeSupport(withSection(base, `uprobe/${BIN}:fx_add+0x4`)), undefined);
  t.equal(autoAttachUprobeSupport(withSection(base, 'usdt/libfoo.so:prov:name')), undefined);
  t.throws(() => autoAttachUprobe(coll.programs.on_add, base), { name: 'TsbpfError', message: /on_add.*cannot auto-attach/ });

  const off = openBinary(BIN).findFunction('fx_add').offset;
  await withTarget(async (p) => {
    const multi = !noMulti;
    const links = [
      autoAttachUprobe(coll.programs.on_add, withSection(base, `uprobe/${BIN}:fx_add`)) as Link,
      autoAttachUprobe(coll.programs.on_add, withSection(base, `uprobe.s/${BIN}:0x${off.toString(16)}`)) as Link,
      ...(multi ? [autoAttachUprobe(coll.programs.on_multi, withSection(spec.programs.on_multi, `uprobe.multi/${BIN}:fx_multi_a*`)) as Link] : []),
    ];
    t.match(links[1].target, new RegExp(`:0x${off.toString(16)}$`));
    await p.send('add 1 2');
    await p.send('multi');
    t.equal(num(coll, 'add_calls'), 2, 'by symbol and by file offset');
    if (multi) t.equal(num(coll, 'multi_calls'), 1, 'the glob from the section');
    else t.comment(`uprobe.multi section not attached: ${noMulti}`);
    for (const l of links) l.close();
  });
});

t.test('bad input: clear, typed errors', { skip }, (t) => {
  using coll = new Collection(spec, { programs: ['on_add'] });
  const prog = coll.programs.on_add;
  t.throws(() => attachUprobe(prog, { binary: BIN, symbol: 'no_such_fn' }), { name: 'TsbpfError', message: /attach "on_add" to .*: symbol "no_such_fn" not found in .*uprobe_target/ });
  t.throws(() => attachUprobe(prog, { binary: '/nonexistent/prog', symbol: 'main' }), { name: 'TsbpfError', message: /"\/nonexistent\/prog" not found/ });
  t.throws(() => attachUprobe(prog, { binary: 'libnotthere.so.9', symbol: 'x' }), { name: 'TsbpfError', message: /library "libnotthere.so.9" not found.*full path/ });
  t.throws(() => attachUprobe(prog, { binary: 'no-such-program-xyz', symbol: 'x' }), { name: 'TsbpfError', message: /not found in \$PATH/ });
  const text = join(built.dir, 'notes.txt');
  writeFileSync(text, 'just some text, not a program\n');
  t.throws(() => attachUprobe(prog, { binary: text, symbol: 'main' }), { name: 'ElfError', message: /not an ELF file/ });
  t.throws(() => attachUprobe(prog, { binary: BIN }), { name: 'TypeError', message: /symbol or a file offset/ });
  t.throws(() => attachUprobe(prog, { binary: BIN, symbol: 'fx_add', offset: 100000 }), { message: /past the end of fx_add/ });
  t.throws(() => attachUprobe(prog, { binary: BIN, offset: 1 << 30 }), { name: 'SyscallError', message: /perf_event_open failed: EINVAL.*offset 0x40000000/ });
  t.throws(() => attachUprobe(prog, { binary: BIN, symbol: 'fx_add', pid: 0x3ffffff0 }), { name: 'SyscallError', message: /ESRCH/ });
  t.throws(() => attachUprobe(prog, { binary: BIN, symbol: 'tsbpf_fx_tick_semaphore' }), { message: /not a function/ });
  {
    using tp = new Collection(loadCollectionSpec(obj('links_test.o')), { programs: ['prog_a'] });
    t.throws(() => attachUprobe(tp.programs.prog_a, { binary: BIN, symbol: 'fx_add' }), { name: 'TsbpfError', message: /"prog_a" cannot be attached as uprobe.*BPF_PROG_TYPE_KPROBE/ });
    t.ok(attachTracepoint, 'tracepoint programs exist');
  }

  // Truncated and corrupted binaries: always an ElfError, never a RangeError.
  const good = readFileSync(BIN);
  let checked = 0;
  const tryParse = (buf: Buffer, what: string): void => {
    try {
      const e = new NativeElf(buf, what);
      e.symbols();
      e.usdtNotes();
      try {
        e.findFunction('fx_add');
      } catch (err) {
        if (!(err instanceof TsbpfError)) throw err;
      }
    } catch (err) {
      if (!(err instanceof ElfError)) t.fail(`${what}: ${String(err)}`);
    }
    checked++;
  };
  for (let n = 0; n < good.length; n += Math.max(1, Math.floor(good.length / 300))) tryParse(good.subarray(0, n), `truncated to ${n}`);
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const hdrFields = [32, 40, 54, 56, 58, 60, 62];
  for (let i = 0; i < 400; i++) {
    const b = Buffer.from(good);
    const at = i < 100 ? hdrFields[i % hdrFields.length] + (i % 2) : Math.floor(rnd() * b.length);
    b[at] = Math.floor(rnd() * 256);
    if (i >= 100) {
      const shoff = Number(good.readBigUInt64LE(40));
      const k = shoff + Math.floor(rnd() * (good.length - shoff));
      b[k] = Math.floor(rnd() * 256);
    }
    tryParse(b, `corruption ${i}`);
  }
  t.throws(() => new NativeElf(Buffer.from('\x7fELF\x01\x01' + '\0'.repeat(60)), 'elf32'), { name: 'ElfError', message: /only 64-bit little-endian/ });
  t.ok(checked > 600);
  t.end();
});

t.test('no fd leak across attach/detach cycles and failures', { skip }, async (t) => {
  const before = fdCount();
  {
    using coll = new Collection(spec, { programs: ['on_add', 'on_multi'] });
    await withTarget(async (p) => {
      await p.send('sema');
      const mid = fdCount();
      for (let i = 0; i < 8; i++) {
        attachUprobe(coll.programs.on_add, { binary: BIN, symbol: 'fx_add', retprobe: i % 2 === 1 }).close();
        if (!noMulti) attachUprobeMulti(coll.programs.on_multi, { binary: BIN, symbols: 'fx_*' }).close();
        try {
          attachUprobe(coll.programs.on_add, { binary: BIN, offset: 1 << 30 });
        } catch {
          /* expected */
        }
      }
      t.equal(fdCount(), mid, 'attach/close and failed attaches leave no fd');
    });
  }
  t.equal(fdCount(), before, 'collection closed, child gone');
});
