import t, { type Test } from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  loadCollectionSpec,
  getVariable,
  setVariable,
  classifySection,
  internalMapName,
  BPF_F_MMAPABLE,
  BPF_F_RDONLY_PROG,
  BPF_F_SLEEPABLE,
  BPF_F_XDP_HAS_FRAGS,
  type CollectionSpec,
  type FunctionSpec,
} from '../src/elf/index.js';
import { ElfError, TsbpfError } from '../src/errors.js';
import { Btf } from '../src/btf/btf.js';
import type { BtfMember, BtfStruct } from '../src/btf/types.js';
import { BPF_ATTACH_TYPE as A, BPF_MAP_TYPE as M, BPF_PROG_TYPE as P } from '../src/syscall/kernel-defs.generated.js';

const BPF_DIR = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..', 'bpf');
const objects = readdirSync(BPF_DIR)
  .filter((f) => f.endsWith('.o'))
  .sort();
const obj = (name: string): string => join(BPF_DIR, name);
const has = (name: string): boolean => objects.includes(name);

/** Deterministic PRNG (mulberry32) so that the fuzz cases are the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Checks the invariants every parsed spec must satisfy. */
function checkInvariants(t: Test, spec: CollectionSpec, label: string): void {
  const insnAt = (fn: FunctionSpec, i: number): number => fn.instructions[i * 8];
  for (const [key, fn] of Object.entries(spec.functions)) {
    t.equal(fn.key, key, `${label}: key ${key}`);
    t.equal(fn.instructions.length % 8, 0, `${label}: ${key} has whole instructions`);
    let prev = -1;
    for (const r of fn.relocations) {
      t.ok(r.insn > prev, `${label}: ${key} relocations sorted and unique`);
      prev = r.insn;
      t.ok(r.insn >= 0 && r.insn < fn.instructions.length / 8, `${label}: ${key} reloc in range`);
      const code = insnAt(fn, r.insn);
      if (r.kind === 'call') {
        t.equal(code, 0x85, `${label}: ${key}#${r.insn} is a call`);
        t.ok(spec.functions[r.target], `${label}: call target ${r.target} exists`);
      } else if (r.kind === 'func') {
        t.equal(code, 0x18, `${label}: ${key}#${r.insn} is ld_imm64`);
        t.ok(spec.functions[r.target], `${label}: func target ${r.target} exists`);
      } else if (r.kind === 'map') {
        t.equal(code, 0x18);
        t.ok(spec.maps[r.map], `${label}: map ${r.map} exists`);
      } else if (r.kind === 'mapValue') {
        t.equal(code, 0x18);
        t.equal(spec.maps[r.map]?.origin, 'data', `${label}: ${r.map} is a data map`);
        t.ok(r.offset >= 0 && r.offset < spec.maps[r.map].valueSize, `${label}: offset inside ${r.map}`);
      }
    }
    for (const fi of fn.funcInfos) t.ok(fi.insnOff >= 0 && fi.insnOff < fn.instructions.length / 8);
    for (const li of fn.lineInfos) t.ok(li.insnOff >= 0 && li.insnOff < fn.instructions.length / 8);
    if (fn.funcInfos.length) t.equal(fn.funcInfos[0].insnOff, 0, `${label}: ${key} func info at its start`);
  }
  for (const [name, p] of Object.entries(spec.programs)) {
    t.equal(p.name, name);
    t.equal(spec.functions[p.key], p, `${label}: program ${name} is also in functions`);
  }
  for (const [name, v] of Object.entries(spec.variables)) {
    const m = spec.maps[v.map];
    t.ok(m && m.origin === 'data', `${label}: variable ${name} in a data map`);
    t.ok(v.offset + v.size <= m.valueSize, `${label}: variable ${name} inside its map`);
  }
  for (const m of Object.values(spec.maps)) {
    t.ok(m.kernelName.length <= 15 && /^[A-Za-z0-9_.]*$/.test(m.kernelName), `${label}: kernel name ${m.kernelName}`);
  }
}

t.test('bpf objects are present', async (t) => {
  for (const name of ['loader.o', 'hello.o', 'bad.o', 'sections.o', 'legacy.o', 'mapinmap.o']) {
    t.ok(has(name), `bpf/${name}`);
  }
});

t.test('every bpf/*.o parses and is consistent', async (t) => {
  for (const f of objects) {
    const spec = loadCollectionSpec(obj(f));
    // BTF fixtures (targets for CO-RE tests) have no programs and no license.
    const fixture = /^core_target/.test(f);
    t.ok(fixture || Object.keys(spec.programs).length > 0, `${f} has programs`);
    if (!fixture) t.equal(spec.license, 'GPL', `${f} license`);
    t.equal(spec.objectName, f.replace(/\..*$/, ''));
    checkInvariants(t, spec, f);
  }
});

t.test('loader.o', { skip: !has('loader.o') }, async (t) => {
  const spec = loadCollectionSpec(obj('loader.o'));
  const btf = spec.btf!;
  t.ok(btf, 'has BTF');

  t.test('BTF maps', async (t) => {
    const expect = [
      ['counts', M.HASH, 1024],
      ['slots', M.ARRAY, 8],
      ['percpu', M.PERCPU_ARRAY, 4],
    ] as const;
    for (const [name, type, max] of expect) {
      const m = spec.maps[name];
      t.ok(m, name);
      t.match(m, { name, kernelName: name, type, keySize: 4, valueSize: 8, maxEntries: max, flags: 0, origin: 'btf' });
      t.equal(m.section, '.maps');
      t.equal(m.pinning, 'none');
      t.same(m.contents, []);
      t.equal(btf.sizeof(m.keyType!), 4);
      t.equal(btf.sizeof(m.valueType!), 8);
      t.equal(btf.resolve(m.keyType!).kind, 'int');
    }
  });

  t.test('global data maps', async (t) => {
    t.match(spec.maps['.rodata'], {
      kernelName: 'loader.rodata',
      type: M.ARRAY,
      keySize: 4,
      valueSize: 16,
      maxEntries: 1,
      flags: BPF_F_RDONLY_PROG | BPF_F_MMAPABLE,
      freeze: true,
      origin: 'data',
    });
    t.match(spec.maps['.data'], { kernelName: 'loader.data', flags: BPF_F_MMAPABLE, freeze: false, valueSize: 4 });
    t.match(spec.maps['.bss'], { kernelName: 'loader.bss', flags: BPF_F_MMAPABLE, freeze: false, valueSize: 16 });
    for (const n of ['.rodata', '.data', '.bss']) {
      const m = spec.maps[n];
      t.equal(m.contents.length, 1);
      t.same(m.contents[0].key, Buffer.alloc(4));
      const dsec = btf.type(m.valueType!);
      t.equal(dsec.kind, 'datasec', `${n} value type is its DATASEC`);
      t.equal(dsec.name, n);
      if (dsec.kind === 'datasec') t.equal(dsec.size, m.valueSize, `${n} DATASEC size fixed up`);
    }
    t.same(spec.maps['.bss'].contents[0].value, Buffer.alloc(16), '.bss is zeroed');
    // map order: section order, then offset order
    t.same(Object.keys(spec.maps), ['.rodata', '.data', '.bss', 'counts', 'percpu', 'slots']);
  });

  t.test('variables', async (t) => {
    t.match(spec.variables.multiplier, { map: '.rodata', offset: 0, size: 4, readonly: true, global: true });
    t.match(spec.variables.magic, { map: '.rodata', offset: 8, size: 8, readonly: true, global: true });
    t.match(spec.variables.data_init, { map: '.data', offset: 0, size: 4, readonly: false });
    t.match(spec.variables.result, { map: '.bss', offset: 0, size: 8 });
    t.match(spec.variables.loop_sum, { map: '.bss', offset: 8, size: 4 });
    t.match(spec.variables.loop_iters, { map: '.bss', offset: 12, size: 4 });
    t.equal(btf.sizeof(spec.variables.magic.type), 8);
    t.equal(getVariable(spec, 'data_init').readUInt32LE(0), 7);
    t.equal(getVariable(spec, 'multiplier').readUInt32LE(0), 1);
    t.equal(getVariable(spec, 'magic').readBigUInt64LE(0), 0n);

    const rodata = btf.type(spec.maps['.rodata'].valueType!);
    if (rodata.kind === 'datasec') {
      t.same(
        rodata.vars.map((v) => v.offset),
        [0, 8],
        'DATASEC var offsets from the symbol table, sorted',
      );
    }
  });

  t.test('programs and functions', async (t) => {
    t.same(Object.keys(spec.programs), ['run_all', 'xdp_count']);
    t.match(spec.programs.run_all, {
      section: 'syscall',
      type: P.SYSCALL,
      expectedAttachType: 0,
      flags: BPF_F_SLEEPABLE,
      autoload: true,
      license: 'GPL',
      global: true,
      sectionKind: 'syscall',
    });
    t.match(spec.programs.xdp_count, { section: 'xdp', type: P.XDP, expectedAttachType: A.XDP, flags: 0 });
    t.match(spec.functions['.text/add_mul'], { name: 'add_mul', global: false, section: '.text' });
    t.match(spec.functions['.text/global_helper'], { name: 'global_helper', global: true });
    t.ok(spec.functions['.text/loop_cb']);
    t.notOk(spec.programs.add_mul, 'subprograms are not programs');

    const relocs = spec.programs.run_all.relocations;
    const calls = relocs.filter((r) => r.kind === 'call').map((r) => (r as { target: string }).target);
    t.ok(calls.includes('.text/add_mul'), 'static call');
    t.ok(calls.includes('.text/global_helper'), 'global call');
    t.ok(relocs.some((r) => r.kind === 'func' && r.target === '.text/loop_cb'), 'bpf_loop callback');
    for (const m of ['counts', 'slots', 'percpu']) {
      t.ok(relocs.some((r) => r.kind === 'map' && r.map === m), `map reloc ${m}`);
    }
    t.ok(relocs.some((r) => r.kind === 'mapValue' && r.map === '.rodata' && r.offset === 8), 'magic at .rodata+8');
    t.ok(relocs.some((r) => r.kind === 'mapValue' && r.map === '.data' && r.offset === 0), 'data_init');
    t.ok(
      spec.functions['.text/loop_cb'].relocations.some((r) => r.kind === 'mapValue' && r.map === '.bss' && r.offset === 8),
      'loop_sum from the callback',
    );
    // instructions of the program match the ELF section bytes
    t.ok(spec.programs.run_all.funcInfos.length === 1);
    t.ok(spec.programs.run_all.lineInfos.length > 0);
  });

  t.test('getVariable / setVariable', async (t) => {
    const s = loadCollectionSpec(obj('loader.o'));
    setVariable(s, 'multiplier', 3);
    t.equal(s.maps['.rodata'].contents[0].value instanceof Buffer, true);
    t.equal(getVariable(s, 'multiplier').readUInt32LE(0), 3);
    t.equal((s.maps['.rodata'].contents[0].value as Buffer).readUInt32LE(0), 3, 'written into the map contents');
    setVariable(s, 'magic', 0xfedcba9876543210n);
    t.equal(getVariable(s, 'magic').readBigUInt64LE(0), 0xfedcba9876543210n);
    setVariable(s, 'magic', 5);
    t.equal(getVariable(s, 'magic').readBigUInt64LE(0), 5n);
    setVariable(s, 'data_init', true);
    t.equal(getVariable(s, 'data_init').readUInt32LE(0), 1);
    setVariable(s, 'data_init', Buffer.from([1, 2, 3, 4]));
    t.same(getVariable(s, 'data_init'), Buffer.from([1, 2, 3, 4]));
    setVariable(s, 'loop_sum', 0xffffffff);
    t.equal(getVariable(s, 'loop_sum').readUInt32LE(0), 0xffffffff);

    const copy = getVariable(s, 'loop_sum');
    copy.fill(0);
    t.equal(getVariable(s, 'loop_sum').readUInt32LE(0), 0xffffffff, 'getVariable returns a copy');

    t.throws(() => setVariable(s, 'multiplier', -1), RangeError, 'u32 is unsigned');
    t.throws(() => setVariable(s, 'multiplier', 2 ** 32), RangeError);
    t.throws(() => setVariable(s, 'multiplier', 1.5), RangeError);
    t.throws(() => setVariable(s, 'magic', 1n << 64n), RangeError);
    t.throws(() => setVariable(s, 'multiplier', Buffer.alloc(8)), TypeError, 'buffer size must match');
    t.throws(() => setVariable(s, 'multiplier', 'x'), TypeError);
    t.throws(() => setVariable(s, 'multiplier', {} as unknown as number), TypeError);
    t.throws(() => setVariable(s, 'nope', 1), { message: /known variables: .*multiplier/ });
    t.throws(() => getVariable(s, 'nope'), TsbpfError);
    t.throws(() => getVariable(s, 'toString'), TsbpfError, 'no prototype lookups');
    t.equal(getVariable(s, 'multiplier').readUInt32LE(0), 3, 'failed sets change nothing');

    // the original spec is untouched: specs don't share buffers
    t.equal(getVariable(spec, 'multiplier').readUInt32LE(0), 1);
  });
});

t.test('hello.o', { skip: !has('hello.o') }, async (t) => {
  const spec = loadCollectionSpec(obj('hello.o'));
  t.match(spec.programs.on_getpid, {
    type: P.TRACEPOINT,
    attachTo: 'syscalls/sys_enter_getpid',
    sectionKind: 'tp',
    expectedAttachType: 0,
  });
  t.match(spec.programs.on_raw_sys_enter, { type: P.RAW_TRACEPOINT, attachTo: 'sys_enter', sectionKind: 'raw_tp' });
  t.match(spec.programs.on_btf_sys_enter, {
    type: P.TRACING,
    expectedAttachType: A.TRACE_RAW_TP,
    attachTo: 'sys_enter',
    sectionKind: 'tp_btf',
  });
  t.match(spec.maps.calls, { type: M.HASH, keySize: 4, valueSize: 8 });
  t.match(spec.variables.target_tgid, { map: '.rodata', readonly: true, size: 4 });
  for (const v of ['total', 'raw_total', 'btf_total']) t.match(spec.variables[v], { map: '.bss', size: 8 });
  t.equal(spec.maps['.rodata'].kernelName, 'hello.rodata');
  t.equal(spec.maps['.bss'].kernelName, 'hello.bss');
});

t.test('sections.o: section names', { skip: !has('sections.o') }, async (t) => {
  const spec = loadCollectionSpec(obj('sections.o'));
  const S = BPF_F_SLEEPABLE;
  // name: [section, type, expected attach type, attachTo, flags, autoload]
  const expected: Record<string, [string, number, number, string, number, boolean]> = {
    xdp_one: ['xdp', P.XDP, A.XDP, '', 0, true],
    xdp_two: ['xdp', P.XDP, A.XDP, '', 0, true],
    xdp_noautoload: ['?xdp', P.XDP, A.XDP, '', 0, false],
    xdp_frags: ['xdp.frags', P.XDP, A.XDP, '', BPF_F_XDP_HAS_FRAGS, true],
    socket_filter: ['socket', P.SOCKET_FILTER, 0, '', 0, true],
    tc_prog: ['tc', P.SCHED_CLS, 0, '', 0, true],
    tcx_ingress: ['tcx/ingress', P.SCHED_CLS, A.TCX_INGRESS, '', 0, true],
    netfilter_prog: ['netfilter', P.NETFILTER, A.NETFILTER, '', 0, true],
    cg_skb_ingress: ['cgroup_skb/ingress', P.CGROUP_SKB, A.CGROUP_INET_INGRESS, '', 0, true],
    cg_skb_egress: ['cgroup_skb/egress', P.CGROUP_SKB, A.CGROUP_INET_EGRESS, '', 0, true],
    cg_connect4: ['cgroup/connect4', P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, '', 0, true],
    cg_sock_create: ['cgroup/sock_create', P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, '', 0, true],
    cg_sysctl: ['cgroup/sysctl', P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, '', 0, true],
    cg_getsockopt: ['cgroup/getsockopt', P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, '', 0, true],
    kprobe_unlinkat: ['kprobe/do_unlinkat', P.KPROBE, 0, 'do_unlinkat', 0, true],
    kretprobe_unlinkat: ['kretprobe/do_unlinkat', P.KPROBE, 0, 'do_unlinkat', 0, true],
    ksyscall_openat: ['ksyscall/openat', P.KPROBE, 0, 'openat', 0, true],
    uprobe_manual: ['uprobe', P.KPROBE, 0, '', 0, true],
    uprobe_sleepable_main: ['uprobe.s//proc/self/exe:main', P.KPROBE, 0, '/proc/self/exe:main', S, true],
    uretprobe_malloc: ['uretprobe/libc.so.6:malloc', P.KPROBE, 0, 'libc.so.6:malloc', 0, true],
    tracepoint_sched_switch: ['tracepoint/sched/sched_switch', P.TRACEPOINT, 0, 'sched/sched_switch', 0, true],
    raw_tracepoint_sched_switch: ['raw_tracepoint/sched_switch', P.RAW_TRACEPOINT, 0, 'sched_switch', 0, true],
    tp_btf_sched_switch: ['tp_btf/sched_switch', P.TRACING, A.TRACE_RAW_TP, 'sched_switch', 0, true],
    fentry_unlinkat: ['fentry/do_unlinkat', P.TRACING, A.TRACE_FENTRY, 'do_unlinkat', 0, true],
    fexit_unlinkat: ['fexit/do_unlinkat', P.TRACING, A.TRACE_FEXIT, 'do_unlinkat', 0, true],
    fmod_ret_inode_unlink: ['fmod_ret/security_inode_unlink', P.TRACING, A.MODIFY_RETURN, 'security_inode_unlink', 0, true],
    lsm_file_open: ['lsm/file_open', P.LSM, A.LSM_MAC, 'file_open', 0, true],
    lsm_s_bprm_committed_creds: ['lsm.s/bprm_committed_creds', P.LSM, A.LSM_MAC, 'bprm_committed_creds', S, true],
    iter_task: ['iter/task', P.TRACING, A.TRACE_ITER, 'task', 0, true],
    iter_s_map_elem: ['iter.s/bpf_map_elem', P.TRACING, A.TRACE_ITER, 'bpf_map_elem', S, true],
    perf_event_prog: ['perf_event', P.PERF_EVENT, 0, '', 0, true],
    sk_lookup_prog: ['sk_lookup', P.SK_LOOKUP, A.SK_LOOKUP, '', 0, true],
    sk_msg_prog: ['sk_msg', P.SK_MSG, A.SK_MSG_VERDICT, '', 0, true],
    sk_skb_verdict: ['sk_skb/stream_verdict', P.SK_SKB, A.SK_SKB_STREAM_VERDICT, '', 0, true],
    syscall_prog: ['syscall', P.SYSCALL, 0, '', S, true],
    struct_ops_dummy_op: ['struct_ops/dummy_op', P.STRUCT_OPS, 0, 'dummy_op', 0, true],
  };
  t.same(Object.keys(spec.programs).sort(), Object.keys(expected).sort(), 'every program found');
  for (const [name, [section, type, attach, attachTo, flags, autoload]] of Object.entries(expected)) {
    const p = spec.programs[name];
    if (!t.ok(p, name)) continue;
    t.same(
      [p.section, p.type, p.expectedAttachType, p.attachTo, p.flags, p.autoload],
      [section, type, attach, attachTo, flags, autoload],
      name,
    );
  }
  t.equal(spec.programs.xdp_one.sectionOffset, 0);
  t.ok(spec.programs.xdp_two.sectionOffset > 0, 'second program of the xdp section');
  t.equal(spec.programs.xdp_two.section, 'xdp');
  t.equal(spec.programs.uprobe_sleepable_main.sectionKind, 'uprobe');
  t.equal(spec.programs.lsm_s_bprm_committed_creds.sectionKind, 'lsm');
  t.equal(spec.programs.xdp_noautoload.sectionKind, 'xdp');

  t.match(spec.maps['.data.custom'], { kernelName: '.data.custom', flags: BPF_F_MMAPABLE, freeze: false });
  t.match(spec.maps['.rodata.consts'], { kernelName: '.rodata.consts', flags: BPF_F_MMAPABLE | BPF_F_RDONLY_PROG, freeze: true });
  t.equal(getVariable(spec, 'custom_var').readInt32LE(0), 3);
  t.equal(getVariable(spec, 'ro_var').readInt32LE(0), 5);
  t.match(spec.variables.ro_var, { map: '.rodata.consts', readonly: true });
  t.match(spec.variables.custom_var, { map: '.data.custom', readonly: false });
  const two = spec.programs.xdp_two.relocations.filter((r) => r.kind === 'mapValue').map((r) => (r as { map: string }).map);
  t.same([...new Set(two)].sort(), ['.bss', '.data', '.data.custom', '.rodata', '.rodata.consts']);
});

t.test('legacy.o', { skip: !has('legacy.o') }, async (t) => {
  const spec = loadCollectionSpec(obj('legacy.o'));
  t.match(spec.maps.legacy_hash, {
    name: 'legacy_hash',
    kernelName: 'legacy_hash',
    type: M.HASH,
    keySize: 4,
    valueSize: 8,
    maxEntries: 16,
    flags: 0,
    origin: 'legacy',
    section: 'maps',
  });
  t.ok(spec.programs.legacy_xdp.relocations.some((r) => r.kind === 'map' && r.map === 'legacy_hash'));
});

t.test('mapinmap.o', { skip: !has('mapinmap.o') }, async (t) => {
  const spec = loadCollectionSpec(obj('mapinmap.o'));
  t.match(spec.maps.inner_a, { type: M.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1 });
  const outer = spec.maps.outer;
  t.match(outer, { type: M.ARRAY_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 2 });
  t.match(outer.innerMap, { name: 'outer.inner', type: M.ARRAY, keySize: 4, valueSize: 4, maxEntries: 1, contents: [] });
  t.same(outer.contents, [{ key: Buffer.from([0, 0, 0, 0]), value: { map: 'inner_a' } }]);
  const jmp = spec.maps.jmp;
  t.match(jmp, { type: M.PROG_ARRAY, keySize: 4, valueSize: 4, maxEntries: 2 });
  t.same(jmp.contents, [{ key: Buffer.from([1, 0, 0, 0]), value: { program: 'tail_target' } }]);
  t.ok(spec.programs.tail_target && spec.programs.xdp_entry);
  t.equal(spec.maps['.bss'].kernelName, 'mapinmap.bss');
});

const FIXTURES = join(BPF_DIR, '..', 'test', 'fixtures');

t.test('fixtures/elf-edge.o: calls, callbacks, externs, map properties', async (t) => {
  const spec = loadCollectionSpec(join(FIXTURES, 'elf-edge.o'));
  checkInvariants(t, spec, 'elf-edge.o');
  t.equal(spec.license, 'Dual BSD/GPL');
  t.equal(spec.kernelVersion, 0x060100);
  t.equal(spec.programs.edge_xdp.kernelVersion, 0x060100);
  t.same(Object.keys(spec.programs), ['edge_xdp', 'edge_xdp2', 'edge_tc']);

  // a static function in a program section is a subprogram of that section
  const local = spec.functions['xdp/xdp_local'];
  t.match(local, { name: 'xdp_local', section: 'xdp', global: false });
  t.notOk(spec.programs.xdp_local);
  t.ok(local.sectionOffset > spec.programs.edge_xdp.sectionOffset && local.sectionOffset < spec.programs.edge_xdp2.sectionOffset);
  // same-section calls have no ELF relocation: found from the instruction
  t.same(spec.programs.edge_xdp2.relocations, [{ kind: 'call', insn: 1, target: 'xdp/xdp_local' }]);
  const r = spec.programs.edge_xdp.relocations;
  t.ok(r.some((x) => x.kind === 'call' && x.target === 'xdp/xdp_local'));
  t.ok(r.some((x) => x.kind === 'call' && x.target === '.text/local_helper'), 'call against the .text section symbol');
  t.ok(r.some((x) => x.kind === 'func' && x.target === '.text/cb_global'), 'callback address against a FUNC symbol');
  t.ok(r.some((x) => x.kind === 'extern' && x.name === 'bpf_rcu_read_lock'), 'kfunc call');
  t.ok(r.some((x) => x.kind === 'extern' && x.name === 'LINUX_KERNEL_VERSION'), '__kconfig');
  t.ok(r.some((x) => x.kind === 'extern' && x.name === 'bpf_prog_active'), '__ksym');
  t.ok(r.some((x) => x.kind === 'map' && x.map === 'events'));
  t.ok(r.some((x) => x.kind === 'mapValue' && x.map === '.rodata.str1.1' && x.offset === 0), 'string literal section');
  t.ok(r.some((x) => x.kind === 'mapValue' && x.map === '.rodata' && x.offset === 16), 'static format string (section symbol + imm)');
  t.same(spec.programs.edge_tc.relocations, [{ kind: 'call', insn: 1, target: '.text/local_helper' }]);

  t.match(spec.maps.hom, { type: M.HASH_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 8 });
  t.match(spec.maps.hom.innerMap, { name: 'hom.inner', type: M.ARRAY, keySize: 4, valueSize: 8, maxEntries: 4 });
  t.same(spec.maps.hom.contents, [{ key: Buffer.from([3, 0, 0, 0]), value: { map: 'inner_one' } }]);
  t.match(spec.maps.pinned_hash_with_a_long_name, {
    kernelName: 'pinned_hash_wit',
    type: M.HASH,
    keySize: 16,
    valueSize: 32,
    maxEntries: 64,
    flags: 1, // BPF_F_NO_PREALLOC
    numaNode: 0,
    pinning: 'byName',
  });
  t.equal(spec.maps.pinned_hash_with_a_long_name.keyType, undefined, 'key_size alone gives no key type');
  t.match(spec.maps.bloom, { type: M.BLOOM_FILTER, keySize: 0, valueSize: 4, maxEntries: 100, mapExtra: 3n });
  t.match(spec.maps.events, { type: M.RINGBUF, keySize: 0, valueSize: 0, maxEntries: 4096 });
  t.match(spec.maps['.rodata.str1.1'], { kernelName: '.rodata.str1.1', freeze: true, valueSize: 12 });
  t.equal(spec.maps['.rodata'].kernelName, 'elf_edge.rodata', "'-' in the object name becomes '_'");

  // visibility: __hidden globals and statics are not global
  t.match(spec.variables.hidden_var, { map: '.data', global: false });
  t.match(spec.variables.static_var, { map: '.data', offset: 4, global: false });
  t.match(spec.variables.counter64, { map: '.bss', global: true });
  const cb = spec.btf!.tryFindType('cb_global', 'func');
  t.equal(cb?.kind === 'func' && cb.linkage, 'global');

  t.test('setVariable encodes by BTF type', async (t) => {
    const s = loadCollectionSpec(join(FIXTURES, 'elf-edge.o'));
    setVariable(s, 'favourite', 'BLUE');
    t.equal(getVariable(s, 'favourite').readInt32LE(0), -3, 'enum by name');
    setVariable(s, 'favourite', 1);
    t.equal(getVariable(s, 'favourite').readInt32LE(0), 1);
    t.throws(() => setVariable(s, 'favourite', 'PURPLE'), RangeError);
    setVariable(s, 'greeting', 'hello');
    t.same(getVariable(s, 'greeting'), Buffer.from('hello\0\0\0'));
    setVariable(s, 'greeting', '1234567');
    t.same(getVariable(s, 'greeting'), Buffer.from('1234567\0'));
    t.throws(() => setVariable(s, 'greeting', '12345678'), RangeError, 'no room for the NUL');
    t.throws(() => setVariable(s, 'greeting', 5), TypeError);
    setVariable(s, 'enabled', false);
    t.same(getVariable(s, 'enabled'), Buffer.from([0]));
    setVariable(s, 'enabled', true);
    t.same(getVariable(s, 'enabled'), Buffer.from([1]));
    t.throws(() => setVariable(s, 'enabled', 2), RangeError);
    setVariable(s, 'offset16', -32768);
    t.equal(getVariable(s, 'offset16').readInt16LE(0), -32768);
    t.throws(() => setVariable(s, 'offset16', 32768), RangeError);
    t.throws(() => setVariable(s, 'offset16', -32769), RangeError);
    setVariable(s, 'counter64', -5n);
    t.equal(getVariable(s, 'counter64').readBigInt64LE(0), -5n);
    t.throws(() => setVariable(s, 'counter64', 1n << 63n), RangeError);
    t.throws(() => setVariable(s, 'counter64', 2 ** 60), RangeError, 'unsafe integers need a bigint');
    // neighbours untouched
    t.equal(getVariable(s, 'enabled')[0], 1);
    t.same((s.maps['.rodata'].contents[0].value as Buffer).subarray(16), Buffer.from('fav %d\0'));
  });
});

t.test('fixtures/elf-nobtf.o: no BTF', async (t) => {
  const spec = loadCollectionSpec(join(FIXTURES, 'elf-nobtf.o'));
  checkInvariants(t, spec, 'elf-nobtf.o');
  t.equal(spec.btf, undefined);
  t.same(Object.keys(spec.programs), ['edge_xdp', 'edge_xdp2', 'edge_tc']);
  for (const p of Object.values(spec.functions)) t.same(p.funcInfos, []);
  t.equal(spec.maps['.rodata'].valueType, undefined);
  t.equal(spec.maps['.rodata'].kernelName, 'elf_nobt.rodata');
  t.match(spec.variables.favourite, { map: '.rodata', offset: 0, size: 4, type: 0, readonly: true, global: true });
  t.match(spec.variables.greeting, { offset: 4, size: 8 });
  t.match(spec.variables.hidden_var, { global: false });
  t.match(spec.variables.static_var, { offset: 4, global: false });
  setVariable(spec, 'favourite', -1);
  t.equal(getVariable(spec, 'favourite').readUInt32LE(0), 0xffffffff);
  setVariable(spec, 'favourite', 0xfffffffe);
  t.equal(getVariable(spec, 'favourite').readInt32LE(0), -2);
  t.throws(() => setVariable(spec, 'favourite', 2 ** 32), RangeError);
  setVariable(spec, 'greeting', 'abc');
  t.same(getVariable(spec, 'greeting'), Buffer.from('abc\0\0\0\0\0'));
});

t.test('determinism and ownership', async (t) => {
  for (const f of objects) {
    const bytes = readFileSync(obj(f));
    const a = loadCollectionSpec(obj(f));
    const b = loadCollectionSpec(Buffer.from(bytes), { name: f.replace(/\..*$/, '') });
    t.same(a, b, `${f}: same spec from a path and from a Buffer`);
    t.same(Object.keys(a.maps), Object.keys(b.maps));
    t.same(Object.keys(a.programs), Object.keys(b.programs));
    t.same(Object.keys(a.functions), Object.keys(b.functions));
    if (a.btf && b.btf) t.same(a.btf.marshal(), b.btf.marshal(), `${f}: same BTF`);

    // instructions are copies: neither the input nor another spec shares them
    const input = Buffer.from(bytes);
    const c = loadCollectionSpec(input);
    const before = Object.values(c.functions).map((fn) => Buffer.from(fn.instructions));
    input.fill(0);
    t.same(Object.values(c.functions).map((fn) => fn.instructions), before, `${f}: spec independent of its input`);
    const bufs = Object.values(c.functions).map((fn) => fn.instructions.buffer);
    const views = new Set(Object.values(c.functions).map((fn) => fn.instructions));
    t.equal(views.size, Object.keys(c.functions).length, `${f}: one buffer per function`);
    t.ok(bufs.every((buf) => buf !== input.buffer), `${f}: not a view of the input`);
  }
});

t.test('objectName and global data kernel names', async (t) => {
  t.equal(internalMapName('loader', '.rodata'), 'loader.rodata');
  t.equal(internalMapName('hello', '.bss'), 'hello.bss');
  t.equal(internalMapName('my_object_name', '.rodata'), 'my_objec.rodata');
  t.equal(internalMapName('my_object_name', '.bss'), 'my_objec.bss');
  t.equal(internalMapName('my_object_name', '.kconfig'), 'my_obje.kconfig');
  t.equal(internalMapName('obj', '.rodata.abracadabra'), '.rodata.abracad');
  t.equal(internalMapName('a-b', '.data'), 'a_b.data');
  if (has('loader.o')) {
    const spec = loadCollectionSpec(readFileSync(obj('loader.o')));
    t.equal(spec.objectName, 'obj');
    t.equal(spec.maps['.rodata'].kernelName, 'obj.rodata');
    const named = loadCollectionSpec(readFileSync(obj('loader.o')), { name: 'averyveryverylongname' });
    t.equal(named.maps['.rodata'].kernelName, 'averyver.rodata');
    const bytes = readFileSync(obj('loader.o'));
    const u8 = new Uint8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    t.same(loadCollectionSpec(u8), spec, 'a plain Uint8Array works too');
    t.throws(() => loadCollectionSpec(42 as unknown as Buffer), TypeError);
  }
});

t.test('classifySection', async (t) => {
  const cases: [string, number, number, string, number, boolean, string][] = [
    ['kprobe.multi/vfs_*', P.KPROBE, A.TRACE_KPROBE_MULTI, 'vfs_*', 0, true, 'kprobe.multi'],
    ['kretprobe.multi/x', P.KPROBE, A.TRACE_KPROBE_MULTI, 'x', 0, true, 'kretprobe.multi'],
    ['uprobe.multi/bin:f*', P.KPROBE, A.TRACE_UPROBE_MULTI, 'bin:f*', 0, true, 'uprobe.multi'],
    ['usdt/bin:prov:name', P.KPROBE, 0, 'bin:prov:name', 0, true, 'usdt'],
    ['kretsyscall/close', P.KPROBE, 0, 'close', 0, true, 'kretsyscall'],
    ['tp/sched/sched_switch', P.TRACEPOINT, 0, 'sched/sched_switch', 0, true, 'tp'],
    ['tp.s/syscalls/x', P.TRACEPOINT, 0, 'syscalls/x', BPF_F_SLEEPABLE, true, 'tp'],
    ['raw_tp/sys_enter', P.RAW_TRACEPOINT, 0, 'sys_enter', 0, true, 'raw_tp'],
    ['raw_tp.w/bpf_test_finish', P.RAW_TRACEPOINT_WRITABLE, 0, 'bpf_test_finish', 0, true, 'raw_tp.w'],
    ['tp_btf/sched_switch', P.TRACING, A.TRACE_RAW_TP, 'sched_switch', 0, true, 'tp_btf'],
    ['fentry.s/x', P.TRACING, A.TRACE_FENTRY, 'x', BPF_F_SLEEPABLE, true, 'fentry'],
    ['freplace/handler', P.EXT, 0, 'handler', 0, true, 'freplace'],
    ['lsm_cgroup/socket_bind', P.LSM, A.LSM_CGROUP, 'socket_bind', 0, true, 'lsm_cgroup'],
    ['xdp/devmap', P.XDP, A.XDP_DEVMAP, '', 0, true, 'xdp'],
    ['xdp/cpumap', P.XDP, A.XDP_CPUMAP, '', 0, true, 'xdp'],
    ['xdp.frags/devmap', P.XDP, A.XDP_DEVMAP, '', BPF_F_XDP_HAS_FRAGS, true, 'xdp.frags'],
    ['tc/ingress', P.SCHED_CLS, A.TCX_INGRESS, '', 0, true, 'tc'],
    ['tc/egress', P.SCHED_CLS, A.TCX_EGRESS, '', 0, true, 'tc'],
    ['tcx/egress', P.SCHED_CLS, A.TCX_EGRESS, '', 0, true, 'tcx'],
    ['netkit/peer', P.SCHED_CLS, A.NETKIT_PEER, '', 0, true, 'netkit'],
    ['classifier', P.SCHED_CLS, 0, '', 0, true, 'classifier'],
    ['action', P.SCHED_ACT, 0, '', 0, true, 'action'],
    ['sk_reuseport', P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, '', 0, true, 'sk_reuseport'],
    ['sk_reuseport/migrate', P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, '', 0, true, 'sk_reuseport'],
    ['sk_skb/stream_parser', P.SK_SKB, A.SK_SKB_STREAM_PARSER, '', 0, true, 'sk_skb'],
    ['sockops', P.SOCK_OPS, A.CGROUP_SOCK_OPS, '', 0, true, 'sockops'],
    ['cgroup/skb', P.CGROUP_SKB, 0, '', 0, true, 'cgroup'],
    ['cgroup/sock', P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, '', 0, true, 'cgroup'],
    ['cgroup/post_bind6', P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, '', 0, true, 'cgroup'],
    ['cgroup/sendmsg6', P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, '', 0, true, 'cgroup'],
    ['cgroup/getpeername4', P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, '', 0, true, 'cgroup'],
    ['cgroup/setsockopt', P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, '', 0, true, 'cgroup'],
    ['cgroup/dev', P.CGROUP_DEVICE, A.CGROUP_DEVICE, '', 0, true, 'cgroup'],
    ['flow_dissector', P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, '', 0, true, 'flow_dissector'],
    ['lwt_xmit', P.LWT_XMIT, 0, '', 0, true, 'lwt_xmit'],
    ['lwt_seg6local', P.LWT_SEG6LOCAL, 0, '', 0, true, 'lwt_seg6local'],
    ['struct_ops.s/x', P.STRUCT_OPS, 0, 'x', BPF_F_SLEEPABLE, true, 'struct_ops'],
    ['?tp_btf/x', P.TRACING, A.TRACE_RAW_TP, 'x', 0, false, 'tp_btf'],
    // unknown names: UNSPEC, never an error
    ['my_section', P.UNSPEC, 0, '', 0, true, 'my_section'],
    ['kprobex/foo', P.UNSPEC, 0, 'foo', 0, true, 'kprobex'],
    ['xdp_devmap/x', P.UNSPEC, 0, 'x', 0, true, 'xdp_devmap'],
    ['tcx', P.UNSPEC, 0, '', 0, true, 'tcx'],
    ['', P.UNSPEC, 0, '', 0, true, ''],
  ];
  for (const [name, type, attach, attachTo, flags, autoload, kind] of cases) {
    const c = classifySection(name);
    t.same(
      [c.type, c.expectedAttachType, c.attachTo, c.flags, c.autoload, c.sectionKind],
      [type, attach, attachTo, flags, autoload, kind],
      JSON.stringify(name),
    );
  }
});

// ---- malformed input ----

interface Shdr {
  index: number;
  name: string;
  type: number;
  offset: number;
  size: number;
  link: number;
  info: number;
  hdr: number;
}

/** Minimal raw section header reader for crafting broken files. */
function sectionHeaders(buf: Buffer): Shdr[] {
  const shoff = Number(buf.readBigUInt64LE(40));
  const shnum = buf.readUInt16LE(60);
  const shstrndx = buf.readUInt16LE(62);
  const raw = [];
  for (let i = 0; i < shnum; i++) {
    const h = shoff + i * 64;
    raw.push({
      index: i,
      nameOff: buf.readUInt32LE(h),
      type: buf.readUInt32LE(h + 4),
      offset: Number(buf.readBigUInt64LE(h + 24)),
      size: Number(buf.readBigUInt64LE(h + 32)),
      link: buf.readUInt32LE(h + 40),
      info: buf.readUInt32LE(h + 44),
      hdr: h,
    });
  }
  const str = raw[shstrndx];
  return raw.map((r) => {
    const start = str.offset + r.nameOff;
    const name = buf.toString('latin1', start, buf.indexOf(0, start));
    return { ...r, name };
  });
}

function expectElfError(t: Test, buf: Buffer, pattern: RegExp, label: string): void {
  try {
    loadCollectionSpec(buf);
    t.fail(`${label}: expected an ElfError`);
  } catch (err) {
    t.type(err, ElfError, label);
    t.match((err as Error).message, pattern, label);
  }
}

t.test('malformed headers give clear ElfErrors', { skip: !has('loader.o') }, async (t) => {
  const good = readFileSync(obj('loader.o'));
  const edit = (fn: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(good);
    fn(b);
    return b;
  };
  expectElfError(t, Buffer.alloc(0), /not an ELF file/, 'empty');
  expectElfError(t, Buffer.from('\x7fELF'), /truncated ELF header/, 'only magic');
  expectElfError(t, Buffer.from('hello world, this is not an object file at all, not at all....'), /not an ELF file/, 'text');
  expectElfError(t, edit((b) => (b[5] = 2)), /big-endian objects are not supported/, 'big-endian');
  expectElfError(t, edit((b) => (b[4] = 1)), /32-bit/, 'ELFCLASS32');
  expectElfError(t, edit((b) => b.writeUInt16LE(62, 18)), /e_machine is 62 \(x86-64\)/, 'x86-64 object');
  expectElfError(t, edit((b) => b.writeUInt16LE(183, 18)), /AArch64/, 'arm64 object');
  expectElfError(t, edit((b) => b.writeUInt16LE(2, 16)), /ET_EXEC/, 'executable');
  expectElfError(t, edit((b) => b.writeUInt16LE(40, 58)), /e_shentsize/, 'shentsize');
  expectElfError(t, edit((b) => b.writeBigUInt64LE(BigInt(b.length), 40)), /outside the file/, 'shoff past end');
  expectElfError(t, edit((b) => b.writeUInt16LE(0xffff, 60)), /outside the file/, 'too many sections');
  expectElfError(t, edit((b) => b.writeUInt16LE(0, 60)), /no section header table/, 'no sections');
  expectElfError(t, edit((b) => b.writeUInt16LE(0xffff, 62)), /string table index/, 'shstrndx');
  expectElfError(t, edit((b) => b.writeUInt16LE(2, 62)), /not SHT_STRTAB/, 'shstrndx not a strtab');

  const shdrs = sectionHeaders(good);
  const symtab = shdrs.find((s) => s.type === 2)!;
  const relSys = shdrs.find((s) => s.name === '.relsyscall')!;
  const sysSec = shdrs.find((s) => s.name === 'syscall')!;
  const maps = shdrs.find((s) => s.name === '.maps')!;

  expectElfError(t, edit((b) => b.writeBigUInt64LE(BigInt(b.length), symtab.hdr + 32)), /outside the file/, 'section size');
  expectElfError(t, edit((b) => b.writeBigUInt64LE(1n << 62n, symtab.hdr + 24)), /outside the file/, 'section offset');
  expectElfError(t, edit((b) => b.writeUInt32LE(999, symtab.hdr + 40)), /not a string table/, 'symtab sh_link');
  expectElfError(t, edit((b) => b.writeBigUInt64LE(20n, symtab.hdr + 56)), /entry size/, 'symtab entsize');
  expectElfError(t, edit((b) => b.writeUInt32LE(0x7fffffff, symtab.offset + 24 * 5)), /outside string table/, 'st_name');
  expectElfError(t, edit((b) => b.writeUInt32LE(5000, relSys.hdr + 44)), /invalid section/, 'rel sh_info');
  expectElfError(t, edit((b) => b.writeUInt32LE(100000, relSys.offset + 12)), /refers to symbol 100000/, 'rel symbol index');
  expectElfError(t, edit((b) => b.writeBigUInt64LE(1n << 40n, relSys.offset)), /not at an instruction/, 'r_offset');
  expectElfError(t, edit((b) => b.writeBigUInt64LE(3n, relSys.offset)), /not at an instruction/, 'unaligned r_offset');

  // .maps without BTF to describe it
  const btfSec = shdrs.find((s) => s.name === '.BTF')!;
  expectElfError(t, edit((b) => b.writeUInt32LE(0x12345, btfSec.hdr + 4)), /needs BTF/, '.maps without .BTF');

  // a relocation moved onto an instruction that is neither call nor ld_imm64
  expectElfError(t, edit((b) => b.writeBigUInt64LE(8n, relSys.offset)), /neither a call nor ld_imm64/, 'relocated ALU insn');

  // a map symbol whose value points at no map
  const symCount = symtab.size / 24;
  let countsSym = -1;
  for (let i = 0; i < symCount; i++) {
    const o = symtab.offset + i * 24;
    const s = good.readUInt16LE(o + 6);
    if (s === maps.index && good.readBigUInt64LE(o + 8) === 0n) countsSym = i;
  }
  t.ok(countsSym > 0, 'found the counts symbol');
  expectElfError(t, edit((b) => b.writeBigUInt64LE(4n, symtab.offset + countsSym * 24 + 8)), /overlap/, 'map symbol value');
  // st_shndx out of range
  expectElfError(
    t,
    edit((b) => b.writeUInt16LE(0xfff0, symtab.offset + countsSym * 24 + 6)),
    /special section|no ELF symbol/,
    'st_shndx reserved',
  );
  // a call whose target is not a function start: bump the imm of the first pseudo call
  const sys = good.subarray(sysSec.offset, sysSec.offset + sysSec.size);
  let callAt = -1;
  for (let i = 0; i < sys.length; i += 8) if (sys[i] === 0x85 && sys[i + 1] >> 4 === 1 && sys.readInt32LE(i + 4) !== -1) callAt = i;
  t.ok(callAt >= 0, 'found a static call');
  expectElfError(
    t,
    edit((b) => b.writeInt32LE(good.readInt32LE(sysSec.offset + callAt + 4) + 1, sysSec.offset + callAt + 4)),
    /not the start of a function/,
    'call into the middle of a function',
  );
});

/**
 * Rewrites an object's BTF: parse .BTF, let `mutate` change it, append the
 * marshalled result to the file and point the .BTF section at it. .BTF.ext is
 * disabled (its string offsets refer to the old string table).
 */
function withBtf(good: Buffer, mutate: (btf: Btf) => void): Buffer {
  const shdrs = sectionHeaders(good);
  const sh = shdrs.find((s) => s.name === '.BTF')!;
  const ext = shdrs.find((s) => s.name === '.BTF.ext');
  const btf = Btf.parse(good.subarray(sh.offset, sh.offset + sh.size));
  mutate(btf);
  const raw = btf.marshal();
  const pad = (8 - (good.length % 8)) % 8;
  const out = Buffer.concat([good, Buffer.alloc(pad), raw]);
  out.writeBigUInt64LE(BigInt(good.length + pad), sh.hdr + 24);
  out.writeBigUInt64LE(BigInt(raw.length), sh.hdr + 32);
  if (ext) out.writeUInt32LE(0x7fff0000, ext.hdr + 4);
  return out;
}

/** The struct describing BTF map `name`. */
function mapStruct(btf: Btf, name: string): BtfStruct {
  const v = btf.tryFindType(name, 'var');
  if (!v || v.kind !== 'var') throw new Error(`no var ${name}`);
  const st = btf.resolve(v.type);
  if (st.kind !== 'struct') throw new Error(`${name} is not a struct`);
  return st;
}

function editMembers(btf: Btf, map: string, fn: (members: BtfMember[]) => BtfMember[]): void {
  const st = mapStruct(btf, map);
  btf.setType({ ...st, members: fn(st.members.map((m) => ({ ...m }))) });
}

/** Sets the N of an `__uint(member, N)` (the length of the pointed-to array). */
function setUint(btf: Btf, map: string, member: string, n: number): void {
  const m = mapStruct(btf, map).members.find((x) => x.name === member)!;
  const ptr = btf.type(m.type);
  if (ptr.kind !== 'ptr') throw new Error('not a ptr');
  const arr = btf.type(ptr.type);
  if (arr.kind !== 'array') throw new Error('not an array');
  // arrays are shared between members with the same N: give this member its own
  const arrId = btf.addType({ kind: 'array', name: '', type: arr.type, indexType: arr.indexType, nelems: n });
  const ptrId = btf.addType({ kind: 'ptr', name: '', type: arrId });
  editMembers(btf, map, (ms) => ms.map((x) => (x.name === member ? { ...x, type: ptrId } : x)));
}

t.test('BTF map definitions are checked', { skip: !has('loader.o') }, async (t) => {
  const loader = readFileSync(obj('loader.o'));
  const edge = readFileSync(join(FIXTURES, 'elf-edge.o'));

  // sanity: the rewrite itself keeps the object valid
  const same = loadCollectionSpec(withBtf(loader, () => {}));
  t.match(same.maps.counts, { type: M.HASH, keySize: 4, valueSize: 8, maxEntries: 1024 });
  const bigger = loadCollectionSpec(withBtf(loader, (b) => setUint(b, 'counts', 'max_entries', 77)));
  t.equal(bigger.maps.counts.maxEntries, 77);
  t.equal(bigger.maps.slots.maxEntries, 8, 'other maps unchanged');

  const cases: [Buffer, (b: Btf) => void, RegExp, string][] = [
    [loader, (b) => editMembers(b, 'counts', (ms) => ms.map((m) => (m.name === 'max_entries' ? { ...m, name: 'bogus' } : m))), /map counts: unknown member 'bogus'/, 'unknown member'],
    [loader, (b) => editMembers(b, 'slots', (ms) => ms.filter((m) => m.name !== 'type')), /map slots: map type is not specified/, 'no type'],
    [loader, (b) => editMembers(b, 'counts', (ms) => ms.map((m) => (m.name === 'max_entries' ? { ...m, name: 'key_size' } : m))), /map counts: conflicting key size 4 != 1024/, 'key_size vs key type'],
    [loader, (b) => editMembers(b, 'counts', (ms) => ms.map((m) => (m.name === 'key' ? { ...m, name: 'type' } : m))), /map counts: member type should point to an array/, '__type where __uint belongs'],
    [loader, (b) => editMembers(b, 'counts', (ms) => ms.map((m) => (m.name === 'key' ? { ...m, name: 'value' } : m))), /map counts: conflicting value size 4 != 8/, 'two value types'],
    [loader, (b) => editMembers(b, 'counts', (ms) => [...ms, { ...ms[0], name: 'values' }]), /map counts: member 'values' should be a zero-length array|needs type ARRAY_OF_MAPS/, 'values on a hash'],
    [edge, (b) => setUint(b, 'pinned_hash_with_a_long_name', 'pinning', 2), /map pinned_hash_with_a_long_name: invalid pinning value 2/, 'pinning 2'],
    [edge, (b) => editMembers(b, 'hom', (ms) => [ms[ms.length - 1], ...ms.slice(0, -1)]), /map hom: member 'values' must be the last one/, 'values not last'],
    [edge, (b) => {
      const inner = b.tryFindType('inner', 'struct') as BtfStruct;
      b.setType({ ...inner, members: [...inner.members, { ...inner.members[0], name: 'pinning' }] });
    }, /inner map template cannot be pinned|map inner_one: invalid pinning/, 'pinned inner template'],
    [edge, (b) => setUint(b, 'bloom', 'map_extra', 5), /^$/, 'map_extra changed'],
  ];
  for (const [base, mutate, pattern, label] of cases) {
    const buf = withBtf(base, mutate);
    if (pattern.source === '^$') {
      // valid changes: must still parse
      t.doesNotThrow(() => loadCollectionSpec(buf), label);
      continue;
    }
    expectElfError(t, buf, pattern, label);
  }
  t.equal(loadCollectionSpec(withBtf(edge, (b) => setUint(b, 'bloom', 'map_extra', 5))).maps.bloom.mapExtra, 5n);

  // a .maps variable that is not a struct
  expectElfError(
    t,
    withBtf(loader, (b) => {
      const v = b.tryFindType('counts', 'var')!;
      if (v.kind === 'var') b.setType({ ...v, type: mapStruct(b, 'counts').members[0].type });
    }),
    /map counts: definition is a ptr, expected a struct/,
    'map definition not a struct',
  );
  // hidden-visibility global subprograms become static in BTF, like libbpf does
  const spec = loadCollectionSpec(loader);
  const gh = spec.btf!.tryFindType('global_helper', 'func');
  t.equal(gh?.kind === 'func' && gh.linkage, 'global', 'global_helper stays global');
});

t.test('malformed input never escapes as anything but ElfError/BtfError', async (t) => {
  const rand = prng(0x5eed);
  const stats = { ok: 0, rejected: 0, wrappedForeign: 0, cases: 0, slowest: 0 };
  const foreign: string[] = [];
  const attempt = (buf: Buffer, label: string): void => {
    stats.cases++;
    const start = performance.now();
    try {
      const spec = loadCollectionSpec(buf);
      // a spec that parses must be usable
      for (const name of Object.keys(spec.variables)) getVariable(spec, name);
      stats.ok++;
    } catch (err) {
      if (!(err instanceof TsbpfError)) {
        t.fail(`${label}: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
        return;
      }
      const cause = (err as Error).cause;
      if (cause !== undefined && !(cause instanceof TsbpfError)) {
        stats.wrappedForeign++;
        if (foreign.length < 5) foreign.push(`${label}: ${(cause as Error)?.stack?.split('\n').slice(0, 3).join(' | ')}`);
      }
      stats.rejected++;
    }
    const ms = performance.now() - start;
    stats.slowest = Math.max(stats.slowest, ms);
    if (ms > 2000) t.fail(`${label}: took ${ms.toFixed(0)} ms`);
  };

  const fuzzInputs = [...objects.map(obj), join(FIXTURES, 'elf-edge.o'), join(FIXTURES, 'elf-nobtf.o')];
  for (const path of fuzzInputs) {
    const f = path.split('/').pop()!;
    const good = readFileSync(path);
    // truncation: every length of the first 256 bytes, then a spread, then near the end
    for (let n = 0; n < Math.min(256, good.length); n++) attempt(good.subarray(0, n), `${f} truncated to ${n}`);
    for (let n = 256; n < good.length; n += Math.max(1, Math.floor(good.length / 150))) {
      attempt(good.subarray(0, n), `${f} truncated to ${n}`);
    }
    for (let n = Math.max(0, good.length - 80); n < good.length; n++) attempt(good.subarray(0, n), `${f} truncated to ${n}`);

    attempt(Buffer.alloc(good.length), `${f} zeroed`);
    const zeroBody = Buffer.from(good);
    zeroBody.fill(0, 64);
    attempt(zeroBody, `${f} zeroed after the header`);

    const shdrs = sectionHeaders(good);
    const regions: [number, number][] = [[0, 64]];
    const shoff = Number(good.readBigUInt64LE(40));
    regions.push([shoff, shoff + shdrs.length * 64]);
    for (const s of shdrs) {
      if (s.type === 2 || s.type === 9 || s.name === '.maps' || s.name === 'maps') regions.push([s.offset, s.offset + s.size]);
      if (s.name === '.BTF' || s.name === '.BTF.ext') regions.push([s.offset, s.offset + Math.min(s.size, 64)]);
      if (s.type === 1 && s.size > 0 && s.name !== '.BTF' && s.name !== '.BTF.ext' && !s.name.startsWith('.debug')) {
        regions.push([s.offset, s.offset + s.size]);
      }
    }
    // random byte changes in the structural parts
    for (let i = 0; i < 400; i++) {
      const b = Buffer.from(good);
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) {
        const [lo, hi] = regions[Math.floor(rand() * regions.length)];
        if (hi <= lo) continue;
        const at = lo + Math.floor(rand() * (hi - lo));
        const r = rand();
        b[at] = r < 0.3 ? 0 : r < 0.5 ? 0xff : r < 0.7 ? b[at] ^ (1 << Math.floor(rand() * 8)) : Math.floor(rand() * 256);
      }
      attempt(b, `${f} flip #${i}`);
    }
    // random 32/64-bit field overwrites in section headers and symbols
    for (let i = 0; i < 100; i++) {
      const b = Buffer.from(good);
      const [lo, hi] = regions[1 + Math.floor(rand() * (regions.length - 1))];
      if (hi - lo >= 8) {
        const at = lo + Math.floor((rand() * (hi - lo - 8)) / 4) * 4;
        const choices = [0xffffffff, 0x80000000, 0, 1, 8, 24, 64, 0xff00, 0xffff, b.length, b.length + 1];
        b.writeUInt32LE(choices[Math.floor(rand() * choices.length)] >>> 0, at);
      }
      attempt(b, `${f} field #${i}`);
    }
  }
  // pure noise, with and without a valid-looking header
  const header = has('loader.o') ? readFileSync(obj('loader.o')).subarray(0, 64) : Buffer.alloc(64);
  for (let i = 0; i < 300; i++) {
    const len = Math.floor(rand() * 4096);
    const b = Buffer.alloc(len);
    for (let k = 0; k < len; k++) b[k] = Math.floor(rand() * 256);
    if (i % 2 === 0 && len >= 64) header.copy(b, 0);
    attempt(b, `noise #${i}`);
  }
  t.comment(
    `${stats.cases} malformed cases: ${stats.rejected} rejected, ${stats.ok} still parsed, slowest ${stats.slowest.toFixed(1)} ms`,
  );
  if (stats.wrappedForeign) {
    t.comment(`${stats.wrappedForeign} rejections came from a non-tsbpf exception inside the BTF layer, e.g.:`);
    for (const f of foreign) t.comment(`  ${f}`);
  }
  t.equal(stats.wrappedForeign, 0, 'no unexpected exception from the BTF layer');
  t.ok(stats.rejected > 1000, 'most cases rejected');
});
