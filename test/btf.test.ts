// Tests of the BTF layer against real data: the running kernel's BTF, objects compiled by clang,
// and bpftool's view of the same bytes. Nothing is mocked.

import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { BtfError, BtfNotFoundError, NotSupportedError } from '../src/errors.js';
import {
  Btf,
  CORE_RELO_KIND,
  KernelBtfUnavailableError,
  loadBtfFile,
  loadKernelBtf,
  loadKernelModuleBtf,
  marshalFuncInfos,
  marshalLineInfos,
  parseBtfExt,
  type BtfType,
} from '../src/btf/index.js';
import { findElfSection } from '../src/btf/elf-section.js';

const VMLINUX = '/sys/kernel/btf/vmlinux';
const hasVmlinux = existsSync(VMLINUX);
const noVmlinux = hasVmlinux ? false : `${VMLINUX} does not exist (kernel without CONFIG_DEBUG_INFO_BTF)`;

function hasTool(name: string): boolean {
  return spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0;
}
const hasBpftool = hasTool('bpftool');
const hasClang = hasTool('clang-19');

/** `bpftool btf dump file <path> -j`, or a reason why it is not available. */
function bpftoolDump(path: string): { types: Record<string, unknown>[] } | string {
  if (!hasBpftool) return 'bpftool is not installed';
  const r = spawnSync('bpftool', ['btf', 'dump', 'file', path, '-j'], { maxBuffer: 1 << 30, encoding: 'utf8' });
  if (r.status !== 0) return `bpftool failed: ${r.stderr.trim()}`;
  // Enumerator values can exceed 2^53: keep them exact by reading them as strings.
  const dump = JSON.parse(r.stdout.replace(/"val":\s*(-?\d+)/g, '"val":"$1"')) as { types: Record<string, unknown>[] };
  for (const ty of dump.types) {
    if (ty.kind !== 'ENUM' || ty.encoding !== 'UNSIGNED') continue;
    for (const v of ty.values as { val: string }[]) {
      // Some bpftool versions (7.1 here) print an unsigned 32-bit enumerator >= 2^31 sign-extended to
      // 64 bits, e.g. 0x80000000 as 18446744071562067968. Undo that to compare the actual value.
      const n = BigInt(v.val);
      if (n >= 1n << 63n) v.val = String(n - (1n << 64n) + (1n << 32n));
    }
  }
  return dump;
}

/** Our type in the shape of bpftool's JSON output, to compare the two field by field. */
function asBpftoolJson(t: BtfType): Record<string, unknown> {
  const name = t.name || '(anon)';
  const head = { id: t.id, kind: t.kind.toUpperCase(), name };
  switch (t.kind) {
    case 'void':
      return head;
    case 'int':
      return {
        ...head,
        size: t.size,
        bits_offset: t.bitsOffset,
        nr_bits: t.bits,
        encoding: t.signed ? 'SIGNED' : t.char ? 'CHAR' : t.bool ? 'BOOL' : '(none)',
      };
    case 'ptr':
    case 'typedef':
    case 'const':
    case 'volatile':
    case 'restrict':
    case 'type_tag':
      return { ...head, type_id: t.type };
    case 'array':
      return { ...head, type_id: t.type, index_type_id: t.indexType, nr_elems: t.nelems };
    case 'struct':
    case 'union':
      return {
        ...head,
        size: t.size,
        vlen: t.members.length,
        members: t.members.map((m) => ({
          name: m.name || '(anon)',
          type_id: m.type,
          bits_offset: m.bitOffset,
          ...(m.bitfieldSize ? { bitfield_size: m.bitfieldSize } : {}),
        })),
      };
    case 'enum':
    case 'enum64':
      return {
        ...head,
        encoding: t.signed ? 'SIGNED' : 'UNSIGNED',
        size: t.size,
        vlen: t.values.length,
        values: t.values.map((v) => ({ name: v.name, val: String(v.value) })),
      };
    case 'fwd':
      return { ...head, fwd_kind: t.fwdKind };
    case 'func':
    case 'var':
      return { ...head, type_id: t.type, linkage: t.linkage };
    case 'func_proto':
      return {
        ...head,
        ret_type_id: t.returnType,
        vlen: t.params.length,
        params: t.params.map((p) => ({ name: p.name || '(anon)', type_id: p.type })),
      };
    case 'datasec':
      return {
        ...head,
        size: t.size,
        vlen: t.vars.length,
        vars: t.vars.map((v) => ({ type_id: v.type, offset: v.offset, size: v.size })),
      };
    case 'float':
      return { ...head, size: t.size };
    case 'decl_tag':
      return { ...head, type_id: t.type, component_idx: t.componentIdx };
  }
}

/** Ids whose types differ between two specs (first `limit`), and whether the lengths match. */
function diffTypes(a: Btf, b: Btf, limit = 5): string[] {
  const out: string[] = [];
  if (a.length !== b.length) out.push(`length ${a.length} != ${b.length}`);
  for (let id = 0; id < Math.min(a.length, b.length) && out.length < limit; id++) {
    if (!isDeepStrictEqual(a.type(id), b.type(id))) {
      out.push(`type ${id}: ${JSON.stringify(a.type(id), bigintJson)} != ${JSON.stringify(b.type(id), bigintJson)}`);
    }
  }
  return out;
}
function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}

function compareWithBpftool(btf: Btf, dump: { types: Record<string, unknown>[] }): string[] {
  const mismatches: string[] = [];
  if (dump.types.length !== btf.length - 1) mismatches.push(`bpftool has ${dump.types.length} types, we have ${btf.length - 1}`);
  for (const theirs of dump.types) {
    const ours = asBpftoolJson(btf.type(theirs.id as number));
    if (!isDeepStrictEqual(ours, theirs)) {
      mismatches.push(`type ${String(theirs.id)}: ours ${JSON.stringify(ours)} bpftool ${JSON.stringify(theirs)}`);
      if (mismatches.length >= 5) break;
    }
  }
  return mismatches;
}

const C_SOURCE = `
typedef unsigned int u32;
typedef unsigned long long u64;

#define SEC(n) __attribute__((section(n), used))
#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __user __attribute__((btf_type_tag("user")))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

enum color { RED, GREEN = 5, BLUE = 0xffffffffu };
enum sgn { NEG = -3, POS = 7 };
enum big { HUGE = 0x123456789abcdefULL, TOP = 0xfedcba9876543210ULL };
enum sbig { SMALL = -0x100000000LL, PLUS = 1 };

struct inner { int a; char b; };
struct bits { unsigned int x:3, y:5; int z:7; u64 w; };
union un { int i; float f; double d; };
struct fwdonly;
union fwdunion;
typedef struct inner inner_t;

struct outer {
	struct inner in;
	struct bits bf;
	union un u;
	struct fwdonly *fp;
	union fwdunion *fu;
	int arr[4][3];
	struct { int anon_a; union { int ua; short ub; }; };
	enum color c;
	enum sgn s;
	enum big g;
	enum sbig sg;
	char __user *uptr;
	int tagged __tag("member_tag");
	const volatile inner_t *cv;
	_Bool flag;
	long double ld;
	unsigned __int128 wide;
} __tag("struct_tag");

struct packed { char c; int i; } __attribute__((packed));
struct task { int pid; int tgid; struct inner in; } __attribute__((preserve_access_index));

struct {
	__uint(type, 2);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct outer);
} my_map SEC(".maps");

int counter = 1;
const volatile int cfg = 3;
int zeroed;
struct packed pk;
extern int LINUX_KERNEL_VERSION __attribute__((section(".kconfig"), weak));

static __attribute__((noinline)) int helper(struct outer *o, int k) __tag("fn_tag")
{
	return o->in.a + o->arr[k & 3][1] + o->bf.y;
}

__attribute__((noinline)) int global_fn(struct task *t, int other)
{
	return t->tgid + t->in.b + __builtin_preserve_field_info(t->pid, 2) + __builtin_btf_type_id(*t, 0) +
	       __builtin_preserve_type_info(*t, 1);
}

SEC("xdp") int prog(void *ctx)
{
	struct outer o = {};
	return helper(&o, counter) + global_fn(ctx, cfg) + zeroed + LINUX_KERNEL_VERSION + pk.i;
}

SEC("tc") int prog2(void *ctx)
{
	return counter * 2;
}

char LICENSE[] SEC("license") = "GPL";
`;

/** Compiles C_SOURCE once; undefined when clang-19 is missing. */
let compiled: { dir: string; obj: string; src: string } | undefined;
function compileTestObject(): { dir: string; obj: string; src: string } | undefined {
  if (!hasClang) return undefined;
  if (compiled) return compiled;
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-btf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'btf_test.c');
  const obj = join(dir, 'btf_test.o');
  writeFileSync(src, C_SOURCE);
  execFileSync('clang-19', ['-g', '-O2', '-target', 'bpf', '-c', src, '-o', obj]);
  compiled = { dir, obj, src };
  return compiled;
}

function sectionOf(path: string, name: string): Buffer {
  const s = findElfSection(readFileSync(path), name);
  if (!s) throw new Error(`${path} has no ${name}`);
  return s;
}

/** A small BTF with one type of every kind, built through the public API. */
function buildSmallBtf(): Btf {
  const b = Btf.empty();
  const int = b.addType({ kind: 'int', name: 'int', size: 4, signed: true, char: false, bool: false, bitsOffset: 0, bits: 32 });
  const ptr = b.addType({ kind: 'ptr', name: '', type: int });
  const arr = b.addType({ kind: 'array', name: '', type: int, indexType: int, nelems: 3 });
  const st = b.addType({
    kind: 'struct',
    name: 's',
    size: 24,
    members: [
      { name: 'a', type: int, bitOffset: 0, bitfieldSize: 3 },
      { name: 'p', type: ptr, bitOffset: 64, bitfieldSize: 0 },
      { name: 'arr', type: arr, bitOffset: 128, bitfieldSize: 0 },
    ],
  });
  b.addType({ kind: 'union', name: 'u', size: 4, members: [{ name: 'x', type: int, bitOffset: 0, bitfieldSize: 0 }] });
  b.addType({ kind: 'enum', name: 'e', size: 4, signed: true, values: [{ name: 'E_NEG', value: -1 }, { name: 'E_ONE', value: 1 }] });
  b.addType({ kind: 'fwd', name: 'f', fwdKind: 'union' });
  const td = b.addType({ kind: 'typedef', name: 'td', type: st });
  b.addType({ kind: 'volatile', name: '', type: td });
  b.addType({ kind: 'const', name: '', type: int });
  b.addType({ kind: 'restrict', name: '', type: ptr });
  const proto = b.addType({ kind: 'func_proto', name: '', returnType: int, params: [{ name: 'x', type: int }, { name: '', type: 0 }] });
  const fn = b.addType({ kind: 'func', name: 'fn', type: proto, linkage: 'global' });
  const v = b.addType({ kind: 'var', name: 'v', type: int, linkage: 'static' });
  b.addType({ kind: 'datasec', name: '.data', size: 4, vars: [{ type: v, offset: 0, size: 4 }] });
  b.addType({ kind: 'float', name: 'double', size: 8 });
  b.addType({ kind: 'decl_tag', name: 'tag', type: fn, componentIdx: 0 });
  b.addType({ kind: 'decl_tag', name: 'attr', type: st, componentIdx: -1, attribute: true });
  b.addType({ kind: 'type_tag', name: 'user', type: int });
  b.addType({ kind: 'type_tag', name: 'aligned(8)', type: int, attribute: true });
  b.addType({ kind: 'enum64', name: 'e64', size: 8, signed: false, values: [{ name: 'BIG', value: 0xfedcba9876543210n }] });
  return b;
}

/** Every kind of lookup on every type; only BtfError may come out. */
function exercise(btf: Btf): void {
  for (let id = 0; id < btf.length; id++) {
    const ty = btf.type(id);
    for (const f of [() => btf.resolve(id), () => btf.sizeof(id), () => btf.alignof(id), () => btf.typesByName(ty.name)]) {
      try {
        f();
      } catch (e) {
        if (!(e instanceof BtfError)) throw e;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

t.test('kernel BTF (/sys/kernel/btf/vmlinux)', { skip: noVmlinux }, async (t) => {
  const data = readFileSync(VMLINUX);
  const t0 = performance.now();
  const btf = Btf.parse(data);
  const t1 = performance.now();
  const ts = btf.typesByName('task_struct');
  const t2 = performance.now();
  t.comment(
    `vmlinux: ${(data.length / 1e6).toFixed(1)} MB, ${btf.length} type ids; Btf.parse ${(t1 - t0).toFixed(0)} ms, ` +
      `first typesByName ${(t2 - t1).toFixed(0)} ms`,
  );
  t.ok(t2 - t0 < 2000, `parse + first name lookup take well under 2 s (took ${(t2 - t0).toFixed(0)} ms)`);
  t.ok(btf.length > 1000, 'has many types');
  t.equal(btf.base, undefined);
  t.same(btf.type(0), { kind: 'void', id: 0, name: '' });
  t.throws(() => btf.type(btf.length), BtfError);
  t.throws(() => btf.type(-1), BtfError);
  t.throws(() => btf.type(1.5), BtfError);

  const task = btf.findType('task_struct', 'struct');
  t.ok(ts.some((x) => x.id === task.id));
  t.equal(btf.sizeof(task.id), (task as { size: number }).size);
  t.throws(() => btf.findType('no_such_type_tsbpf', 'struct'), BtfNotFoundError);
  t.throws(() => btf.findType('task_struct', 'union'), /union.*task_struct/);
  t.equal(btf.tryFindType('task_struct', 'enum'), undefined);

  // A few well-known facts of every 64-bit kernel.
  t.equal(btf.sizeof(btf.findType('u64', 'typedef').id), 8);
  t.equal(btf.alignof(btf.findType('u64', 'typedef').id), 8);
  t.equal(btf.alignof(btf.findType('u32', 'typedef').id), 4);
  t.equal(btf.resolve(btf.findType('u32', 'typedef').id).kind, 'int');
  const listHead = btf.findType('list_head', 'struct');
  t.equal(btf.sizeof(listHead.id), 16);
  t.equal(btf.alignof(listHead.id), 8);
  const mapType = btf.findType('bpf_map_type', 'enum');
  t.match(mapType, { kind: 'enum', values: [{ name: 'BPF_MAP_TYPE_UNSPEC', value: 0 }, { name: 'BPF_MAP_TYPE_HASH', value: 1 }] });
  t.throws(() => btf.sizeof(btf.findType('bpf_map_lookup_elem', 'func').id), BtfError, 'func has no size');

  const dump = bpftoolDump(VMLINUX);
  t.test('matches bpftool for every type', { skip: typeof dump === 'string' ? dump : false }, async (t) => {
    if (typeof dump === 'string') return;
    t.same(compareWithBpftool(btf, dump), [], 'kind, name, size, vlen and all members/values/params of every type');
    const theirTask = dump.types.find((x) => x.kind === 'STRUCT' && x.name === 'task_struct')!;
    t.same(asBpftoolJson(task), theirTask, 'task_struct members');
    const theirMapType = dump.types.find((x) => x.kind === 'ENUM' && x.name === 'bpf_map_type')!;
    t.same(asBpftoolJson(mapType), theirMapType, 'bpf_map_type values');
  });

  t.test('marshal round-trips', async (t) => {
    const m0 = performance.now();
    const raw = btf.marshal();
    const m1 = performance.now();
    const again = Btf.parse(raw);
    t.comment(`vmlinux marshal ${(m1 - m0).toFixed(0)} ms, ${raw.length} bytes (original ${data.length})`);
    t.same(diffTypes(btf, again), [], 'identical types');
    t.ok(raw.equals(again.marshal()), 'marshal is a fixed point');
    t.ok(raw.length <= data.length, 'deduplicated strings do not grow the table');
  });

  t.test('kernel.ts loaders', async (t) => {
    const k = loadKernelBtf();
    t.equal(loadKernelBtf(), k, 'cached once per process');
    t.equal(k.length, btf.length);
    t.equal(loadKernelModuleBtf('vmlinux'), k);
    t.throws(() => loadKernelModuleBtf('tsbpf_no_such_module'), BtfNotFoundError);
    t.throws(() => loadKernelModuleBtf('../etc/passwd'), BtfError);
    const fromFile = loadBtfFile(VMLINUX);
    t.equal(fromFile.length, btf.length);
    // Real module BTF, when any module with BTF is loaded.
    const mods = readdirSync('/sys/kernel/btf').filter((n) => n !== 'vmlinux');
    if (mods.length === 0) {
      t.comment('no kernel module exposes BTF here; module loading not exercised against real data');
    }
    for (const name of mods.slice(0, 5)) {
      const mod = loadKernelModuleBtf(name);
      t.equal(mod.base, k, `${name} is split on top of vmlinux`);
      t.ok(mod.length > k.length, `${name} adds types`);
      exercise(mod);
      const back = Btf.parse(mod.marshal(), { base: k });
      t.same(diffTypes(mod, back), [], `${name} round-trips`);
    }
  });

  t.test('split BTF on top of vmlinux', async (t) => {
    const split = Btf.empty({ base: btf });
    t.equal(split.length, btf.length);
    const taskPtr = split.addType({ kind: 'ptr', name: '', type: task.id });
    t.equal(taskPtr, btf.length, 'ids continue after the base');
    const u32 = btf.findType('u32', 'typedef').id;
    const st = split.addType({
      kind: 'struct',
      name: 'tsbpf_split_test',
      size: 16,
      members: [
        { name: 'pid', type: u32, bitOffset: 0, bitfieldSize: 0 }, // "pid" is a string vmlinux has
        { name: 'tsbpf_unique_member', type: u32, bitOffset: 32, bitfieldSize: 0 },
        { name: 'task', type: taskPtr, bitOffset: 64, bitfieldSize: 0 },
      ],
    });
    split.addType({ kind: 'typedef', name: 'tsbpf_split_t', type: st });
    const raw = split.marshal();
    const strLen = raw.readUInt32LE(20);
    const strings = raw.subarray(24 + raw.readUInt32LE(16), 24 + raw.readUInt32LE(16) + strLen).toString('latin1');
    t.notOk(strings.split('\0').includes('pid'), 'a string the base has is referenced, not copied');
    t.ok(strings.includes('tsbpf_unique_member'));

    const back = Btf.parse(raw, { base: btf });
    t.equal(back.base, btf);
    t.equal(back.length, btf.length + 3);
    t.same(diffTypes(split, back), []);
    t.same([...back.types()].map((x) => x.id), [btf.length, btf.length + 1, btf.length + 2], 'types() lists own types only');
    t.equal(back.type(task.id), btf.type(task.id), 'base ids come from the base');
    t.equal(back.findType('task_struct', 'struct').id, task.id, 'name lookup sees the base');
    t.equal(back.findType('tsbpf_split_t', 'typedef').id, btf.length + 2);
    t.equal(back.sizeof(btf.length + 2), 16);
    t.equal(back.alignof(btf.length + 2), 8);
    t.match(back.type(st), { members: [{ name: 'pid' }, { name: 'tsbpf_unique_member' }, { name: 'task' }] });
    t.throws(() => back.setType({ ...btf.type(1) }), BtfError, 'cannot replace a base type');
    t.throws(() => Btf.parse(raw), BtfError, 'split BTF without its base is rejected');
  });
});

t.test('clang-compiled object', { skip: hasClang ? false : 'clang-19 is not installed' }, async (t) => {
  const { obj, src } = compileTestObject()!;
  const raw = sectionOf(obj, '.BTF');
  const btf = Btf.parse(raw);
  exercise(btf);

  const dump = bpftoolDump(obj);
  t.test('matches bpftool', { skip: typeof dump === 'string' ? dump : false }, async (t) => {
    if (typeof dump === 'string') return;
    t.same(compareWithBpftool(btf, dump), []);
  });

  t.test('decodes every kind and flag', async (t) => {
    const outer = btf.findType('outer', 'struct');
    if (outer.kind !== 'struct') throw new Error('unreachable');
    t.equal(outer.size, 192);
    const bits = btf.findType('bits', 'struct');
    t.match(bits, {
      members: [
        { name: 'x', bitOffset: 0, bitfieldSize: 3 },
        { name: 'y', bitOffset: 3, bitfieldSize: 5 },
        { name: 'z', bitOffset: 8, bitfieldSize: 7 },
        { name: 'w', bitOffset: 64, bitfieldSize: 0 },
      ],
    });
    t.match(btf.findType('color', 'enum'), { signed: false, values: [{ value: 0 }, { value: 5 }, { value: 0xffffffff }] });
    t.match(btf.findType('sgn', 'enum'), { signed: true, values: [{ name: 'NEG', value: -3 }, { value: 7 }] });
    t.match(btf.findType('big', 'enum64'), { signed: false, values: [{ value: 0x123456789abcdefn }, { value: 0xfedcba9876543210n }] });
    t.match(btf.findType('sbig', 'enum64'), { signed: true, values: [{ value: -0x100000000n }, { value: 1n }] });
    t.match(btf.findType('fwdonly', 'fwd'), { fwdKind: 'struct' });
    t.match(btf.findType('fwdunion', 'fwd'), { fwdKind: 'union' });
    t.match(btf.findType('float', 'float'), { size: 4 });
    t.match(btf.findType('user', 'type_tag'), { kind: 'type_tag' });
    t.match(btf.findType('member_tag', 'decl_tag'), { type: outer.id, componentIdx: 12 });
    t.match(btf.findType('struct_tag', 'decl_tag'), { type: outer.id, componentIdx: -1 });
    t.match(btf.findType('helper', 'func'), { linkage: 'static' });
    t.match(btf.findType('global_fn', 'func'), { linkage: 'global' });
    t.match(btf.findType('LINUX_KERNEL_VERSION', 'var'), { linkage: 'extern' });
    t.match(btf.findType('_Bool', 'int'), { bool: true, size: 1 });
    t.match(btf.findType('char', 'int'), { signed: true });
    t.match(btf.findType('.maps', 'datasec'), { vars: [{ offset: 0, size: 32 }] });
    const arr = outer.members.find((m) => m.name === 'arr')!;
    t.equal(btf.sizeof(arr.type), 48, 'int[4][3]');
    t.equal(btf.alignof(arr.type), 4);
    t.equal(btf.sizeof(outer.id), 192);
    t.equal(btf.alignof(outer.id), 8);
    t.equal(btf.alignof(btf.findType('packed', 'struct').id), 1, 'packed struct');
    t.equal(btf.sizeof(btf.findType('packed', 'struct').id), 5);
    t.equal(btf.alignof(btf.findType('bits', 'struct').id), 8);
    const cv = outer.members.find((m) => m.name === 'cv')!;
    t.equal(btf.sizeof(cv.type), 8);
    const pointee = btf.type(cv.type);
    t.equal(pointee.kind, 'ptr');
    t.equal(btf.resolve((pointee as { type: number }).type).name, 'inner', 'resolve skips const, volatile, typedef');
    for (const [name, kind] of [['fwdonly', 'fwd'], ['helper', 'func']] as const) {
      t.throws(() => btf.sizeof(btf.findType(name, kind).id), BtfError, `${kind} has no size`);
    }
    t.throws(() => btf.sizeof(0), BtfError, 'void has no size');
    const proto = btf.type((btf.findType('helper', 'func') as { type: number }).type);
    t.throws(() => btf.sizeof(proto.id), BtfError, 'func_proto has no size');
  });

  t.test('truncated .BTF is rejected at every length', async (t) => {
    let wrong = 0;
    for (let n = 0; n < raw.length; n++) {
      try {
        Btf.parse(raw.subarray(0, n));
        wrong++;
      } catch (e) {
        if (!(e instanceof BtfError)) throw e;
      }
    }
    t.equal(wrong, 0, `all ${raw.length} truncations throw BtfError`);
  });

  t.test('marshal round-trips', async (t) => {
    const m = btf.marshal();
    t.same(diffTypes(btf, Btf.parse(m)), []);
    t.ok(m.equals(Btf.parse(m).marshal()), 'fixed point');
    t.equal(loadBtfFile(obj).length, btf.length, 'loadBtfFile reads .BTF out of an ELF object');
  });

  t.test('BTF.ext', async (t) => {
    const ext = parseBtfExt(sectionOf(obj, '.BTF.ext'), btf);
    t.same([...ext.funcInfos.keys()].sort(), ['.text', 'tc', 'xdp']);
    const fnName = (id: number) => btf.type(id).name;
    t.same(ext.funcInfos.get('xdp')!.map((f) => [f.insnOff, fnName(f.typeId)]), [[0, 'prog']]);
    t.same(ext.funcInfos.get('tc')!.map((f) => [f.insnOff, fnName(f.typeId)]), [[0, 'prog2']]);
    const text = ext.funcInfos.get('.text')!;
    t.same(text.map((f) => fnName(f.typeId)).sort(), ['global_fn', 'helper']);
    t.ok(text.every((f) => Number.isInteger(f.insnOff)), 'offsets are in instructions');
    t.ok(text.some((f) => f.insnOff > 0), 'the second function starts after the first');

    const srcLines = C_SOURCE.split('\n');
    const lines = ext.lineInfos.get('xdp')!;
    t.ok(lines.length > 0);
    for (const li of [...lines, ...ext.lineInfos.get('.text')!]) {
      t.equal(li.fileName, src);
      // clang records the source line (tabs and all) as text.
      t.equal(li.lineText, srcLines[li.line - 1], `line ${li.line} text`);
      t.ok(li.column >= 0 && li.column < 1024);
    }
    t.equal(lines[0]!.insnOff, 0);

    const relos = ext.coreRelos.get('.text')!;
    t.ok(relos && relos.length >= 4, 'CO-RE relocations in .text');
    const taskId = btf.findType('task', 'struct').id;
    const kinds = relos.filter((r) => r.typeId === taskId).map((r) => [r.kind, r.accessor]);
    t.ok(kinds.some(([k, a]) => k === CORE_RELO_KIND.FIELD_BYTE_OFFSET && a === '0:1'), 't->tgid');
    t.ok(kinds.some(([k, a]) => k === CORE_RELO_KIND.FIELD_BYTE_OFFSET && a === '0:2'), 't->in (struct inner is not preserve_access_index)');
    t.ok(kinds.some(([k, a]) => k === CORE_RELO_KIND.FIELD_EXISTS && a === '0:0'), 'field exists');
    t.ok(kinds.some(([k]) => k === CORE_RELO_KIND.TYPE_ID_LOCAL), 'type id');
    t.ok(kinds.some(([k]) => k === CORE_RELO_KIND.TYPE_SIZE), 'type size');

    // Records for BPF_PROG_LOAD: line info strings must point into the marshalled string table.
    const fi = marshalFuncInfos(text);
    t.equal(fi.length, text.length * 8);
    t.equal(fi.readUInt32LE(0), text[0]!.insnOff);
    t.equal(fi.readUInt32LE(4), text[0]!.typeId);
    const copy = Btf.parse(raw);
    const li = marshalLineInfos(lines, copy);
    const loaded = Btf.parse(copy.marshal());
    for (let k = 0; k < lines.length; k++) {
      t.equal(li.readUInt32LE(k * 16), lines[k]!.insnOff);
      t.equal(loaded.stringAt(li.readUInt32LE(k * 16 + 4)), lines[k]!.fileName);
      t.equal(loaded.stringAt(li.readUInt32LE(k * 16 + 8)), lines[k]!.lineText);
      const lc = li.readUInt32LE(k * 16 + 12);
      t.same([lc >>> 10, lc & 0x3ff], [lines[k]!.line, lines[k]!.column]);
    }
    t.equal(copy.stringOffset(lines[0]!.fileName), li.readUInt32LE(4), 'offsets are stable');
    t.ok(copy.marshal().equals(copy.marshal()), 'marshal is stable after stringOffset');
  });

  t.test('malformed BTF.ext', async (t) => {
    const rawExt = sectionOf(obj, '.BTF.ext');
    for (let n = 0; n < rawExt.length; n++) {
      try {
        parseBtfExt(rawExt.subarray(0, n), btf);
      } catch (e) {
        if (!(e instanceof BtfError)) throw e;
      }
    }
    t.throws(() => parseBtfExt(rawExt.subarray(0, 10), btf), BtfError);
    const bad = Buffer.from(rawExt);
    bad.writeUInt32LE(0xfffffff0, 12); // func_info_len
    t.throws(() => parseBtfExt(bad, btf), BtfError);
    const odd = Buffer.from(rawExt);
    const funcOff = odd.readUInt32LE(4) + odd.readUInt32LE(8);
    odd.writeUInt32LE(4, funcOff); // record size below the minimum
    t.throws(() => parseBtfExt(odd, btf), /record size/);
    const be = Buffer.from(rawExt);
    be.writeUInt16BE(0xeb9f, 0);
    t.throws(() => parseBtfExt(be, btf), /big-endian/);
    const rnd = mulberry32(7);
    for (let k = 0; k < 300; k++) {
      const fuzzed = Buffer.from(rawExt);
      for (let j = 0; j < 4; j++) fuzzed[24 + Math.floor(rnd() * (fuzzed.length - 24))] = Math.floor(rnd() * 256);
      try {
        parseBtfExt(fuzzed, btf);
      } catch (e) {
        if (!(e instanceof BtfError)) throw e;
      }
    }
    t.pass('only BtfError');
  });
});

t.test('objects in bpf/', async (t) => {
  const dir = new URL('../bpf/', import.meta.url);
  const objs = existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.o')) : [];
  if (objs.length === 0) {
    t.comment('no bpf/*.o objects yet');
    return;
  }
  for (const name of objs) {
    const path = new URL(name, dir).pathname;
    const data = readFileSync(path);
    const raw = findElfSection(data, '.BTF');
    if (!raw) {
      t.comment(`${name} has no .BTF`);
      continue;
    }
    const btf = Btf.parse(raw);
    exercise(btf);
    t.same(diffTypes(btf, Btf.parse(btf.marshal())), [], `${name} round-trips`);
    const ext = findElfSection(data, '.BTF.ext');
    if (ext) t.ok(parseBtfExt(ext, btf), `${name} .BTF.ext parses`);
    const dump = bpftoolDump(path);
    if (typeof dump !== 'string') t.same(compareWithBpftool(btf, dump), [], `${name} matches bpftool`);
  }
});

t.test('API built BTF', async (t) => {
  const b = buildSmallBtf();
  t.equal(b.length, 22);
  const raw = b.marshal();
  const back = Btf.parse(raw);
  t.same(diffTypes(b, back), [], 'every kind round-trips, incl. attribute tags and enum64');
  t.match(back.findType('attr', 'decl_tag'), { attribute: true });
  t.match(back.findType('aligned(8)', 'type_tag'), { attribute: true });
  t.notOk('attribute' in back.findType('user', 'type_tag'), 'plain tags carry no attribute flag');
  t.equal(back.sizeof(back.findType('td', 'typedef').id), 24);
  t.equal(back.alignof(back.findType('s', 'struct').id), 8);

  // setType / addType keep the name index in step.
  const s = back.findType('s', 'struct');
  back.setType({ ...s, name: 's_renamed' } as BtfType);
  t.equal(back.tryFindType('s', 'struct'), undefined);
  t.equal(back.findType('s_renamed', 'struct').id, s.id);
  const id = back.addType({ kind: 'typedef', name: 's_renamed', type: s.id });
  t.same(back.typesByName('s_renamed').map((x) => x.id), [s.id, id]);
  t.same(diffTypes(back, Btf.parse(back.marshal())), []);
  t.throws(() => back.setType({ kind: 'ptr', id: 99, name: '', type: 1 }), BtfError);

  // stringOffset: offsets are those of the next marshal(), and they stay put.
  const fresh = buildSmallBtf();
  const off = fresh.stringOffset('/src/prog.c');
  t.equal(fresh.stringOffset('/src/prog.c'), off);
  const intOff = fresh.stringOffset('int');
  fresh.addType({ kind: 'typedef', name: 'added_later', type: 1 });
  const parsed = Btf.parse(fresh.marshal());
  t.equal(parsed.stringAt(off), '/src/prog.c');
  t.equal(parsed.stringAt(fresh.stringOffset('added_later')), 'added_later');
  t.equal(parsed.stringAt(0), '');
  t.equal(parsed.stringAt(intOff), 'int', 'a type name is found, not duplicated');
  t.equal(fresh.marshal().toString('latin1').split('\0int\0').length, 2);

  // Marshal refuses what BTF cannot express.
  const bad = Btf.empty();
  bad.addType({ kind: 'ptr', name: '', type: 5 });
  t.throws(() => bad.marshal(), BtfError, 'dangling type id');
  const badEnum = Btf.empty();
  badEnum.addType({ kind: 'enum', name: 'e', size: 4, signed: false, values: [{ name: 'X', value: 2 ** 40 }] });
  t.throws(() => badEnum.marshal(), /enum64/);

  // Cycles are errors, not hangs.
  const cyc = Btf.empty();
  cyc.addType({ kind: 'typedef', name: 'a', type: 2 });
  cyc.addType({ kind: 'typedef', name: 'b', type: 1 });
  t.throws(() => cyc.resolve(1), /cycle/);
  t.throws(() => cyc.sizeof(1), /cycle/);
  t.throws(() => cyc.alignof(2), /cycle/);
  const self = Btf.empty();
  self.addType({ kind: 'struct', name: 'self', size: 4, members: [{ name: 'me', type: 1, bitOffset: 0, bitfieldSize: 0 }] });
  t.throws(() => self.alignof(1), /contains itself/);
  const arrCycle = Btf.empty();
  arrCycle.addType({ kind: 'array', name: '', type: 1, indexType: 1, nelems: 2 });
  t.throws(() => arrCycle.sizeof(1), /cycle/);
});

t.test('malformed BTF is rejected with BtfError', async (t) => {
  const good = buildSmallBtf().marshal();
  t.ok(Btf.parse(good));

  const start = performance.now();
  for (let n = 0; n < good.length; n++) {
    t.throws(() => Btf.parse(good.subarray(0, n)), BtfError, `truncated to ${n} bytes`);
  }
  t.throws(() => Btf.parse(Buffer.alloc(0)), BtfError);
  t.throws(() => Btf.parse(Buffer.alloc(24)), /magic/, 'zeroed header');
  t.throws(() => Btf.parse(Buffer.alloc(4096)), BtfError);

  const be = Buffer.from(good);
  be.writeUInt16BE(0xeb9f, 0);
  t.throws(() => Btf.parse(be), /big-endian/);

  const patch = (at: number, v: number) => {
    const b = Buffer.from(good);
    b.writeUInt32LE(v, at);
    return b;
  };
  t.throws(() => Btf.parse(patch(4, 0xffffffff)), /header length/, 'huge hdr_len');
  t.throws(() => Btf.parse(patch(4, 8)), /header length/, 'tiny hdr_len');
  t.throws(() => Btf.parse(patch(12, 0xfffffffc)), /type section/, 'huge type_len');
  t.throws(() => Btf.parse(patch(20, 0xffffffff)), /string section/, 'huge str_len');
  t.throws(() => Btf.parse(patch(16, 0xfffffff0)), /string section/, 'huge str_off');
  t.throws(() => Btf.parse(patch(8, 4)), BtfError, 'shifted type section');
  const version = Buffer.from(good);
  version[2] = 2;
  t.throws(() => Btf.parse(version), /version/);

  // First type is the int (name, info, size, encoding); the second the ptr.
  const T = 24;
  t.throws(() => Btf.parse(patch(T + 4, (4 << 24) | 0xffff)), /truncated/, 'struct with a huge vlen');
  t.throws(() => Btf.parse(patch(T + 4, 20 << 24)), /unknown kind/, 'kind 20');
  t.throws(() => Btf.parse(patch(T + 4, 0)), /unknown kind/, 'kind 0');
  t.throws(() => Btf.parse(patch(T, 0x7fffffff)), /string/, 'name offset past the strings');
  t.throws(() => Btf.parse(patch(T + 16 + 8, 0xfffff)), /refers to type/, 'ptr to a type that does not exist');
  t.throws(() => Btf.parse(patch(T + 4, ((1 << 24) | (1 << 31)) >>> 0)), /kind_flag/, 'kind_flag on an int');
  t.throws(() => Btf.parse(patch(T + 4, (1 << 24) | (1 << 20))), /info/, 'reserved info bits');
  t.throws(() => Btf.parse(patch(T + 12, 200)), /int encoding/, 'int of 200 bits');

  // Random bytes, with and without a valid header in front.
  const rnd = mulberry32(1);
  for (let k = 0; k < 200; k++) {
    const junk = Buffer.alloc(24 + Math.floor(rnd() * 400));
    for (let j = 0; j < junk.length; j++) junk[j] = Math.floor(rnd() * 256);
    t.throws(() => Btf.parse(junk), BtfError);
    junk.writeUInt16LE(0xeb9f, 0);
    junk[2] = 1;
    junk.writeUInt32LE(24, 4);
    junk.writeUInt32LE(0, 8);
    const typeLen = Math.floor(rnd() * (junk.length - 24)) & ~3;
    junk.writeUInt32LE(typeLen, 12);
    junk.writeUInt32LE(typeLen, 16);
    junk.writeUInt32LE(junk.length - 24 - typeLen, 20);
    try {
      exercise(Btf.parse(junk));
    } catch (e) {
      if (!(e instanceof BtfError)) throw e;
    }
  }

  // Bit flips in a valid BTF: either a BtfError, or something that still decodes and round-trips.
  let survived = 0;
  for (let k = 0; k < 2000; k++) {
    const fuzzed = Buffer.from(good);
    const flips = 1 + Math.floor(rnd() * 3);
    for (let j = 0; j < flips; j++) fuzzed[Math.floor(rnd() * fuzzed.length)] ^= 1 << Math.floor(rnd() * 8);
    let b: Btf;
    try {
      b = Btf.parse(fuzzed);
    } catch (e) {
      if (!(e instanceof BtfError)) throw e;
      continue;
    }
    survived++;
    exercise(b);
    const diff = diffTypes(b, Btf.parse(b.marshal()));
    if (diff.length) t.fail(`fuzzed input ${k} does not round-trip: ${diff[0]}`);
  }
  t.comment(`${survived} of 2000 bit-flipped inputs still parsed (and round-tripped)`);
  t.ok(performance.now() - start < 20000, 'quick');
});

t.test('loadKernelBtf explains a missing BTF', async (t) => {
  const message = 'kernel has no BTF at /sys/kernel/btf/vmlinux (needs CONFIG_DEBUG_INFO_BTF)';
  const err = new KernelBtfUnavailableError();
  t.ok(err instanceof NotSupportedError, 'a NotSupportedError, so callers can skip');
  t.equal(err.message, message);
  t.ok(err.stack?.startsWith(`KernelBtfUnavailableError: ${message}`), 'stack shows the message');
  if (hasVmlinux) {
    t.ok(loadKernelBtf() instanceof Btf);
  } else {
    t.throws(() => loadKernelBtf(), KernelBtfUnavailableError);
  }
});

t.test('loadBtfFile', async (t) => {
  t.throws(() => loadBtfFile('/nonexistent/tsbpf.btf'), BtfError);
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-btf-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const rawPath = join(dir, 'small.btf');
  writeFileSync(rawPath, buildSmallBtf().marshal());
  t.equal(loadBtfFile(rawPath).length, 22, 'raw BTF');
  const elfPath = join(dir, 'nobtf.o');
  // An ELF without .BTF: the smallest valid ELF64 header with no sections.
  const elf = Buffer.alloc(64);
  elf.write('\x7fELF', 0, 'latin1');
  elf[4] = 2;
  elf[5] = 1;
  elf[6] = 1;
  writeFileSync(elfPath, elf);
  t.throws(() => loadBtfFile(elfPath), BtfNotFoundError);
});

/** Small deterministic PRNG so that fuzz failures reproduce. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
