// BTF-typed codecs, against the BTF of our real objects, the running kernel's BTF, and hand-built BTF
// for the corners real objects lack (signed bitfields, enum64, unions, floats, 128-bit ints).

import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { BtfError } from '../src/errors.js';
import { Btf, loadKernelBtf, type BtfType, type BtfTypeInit } from '../src/btf/index.js';
import { Codec, codecFor } from '../src/btf/codec.js';
import { loadCollectionSpec } from '../src/elf/index.js';
import { obj } from './helpers/env.js';

const noVmlinux = existsSync('/sys/kernel/btf/vmlinux') ? false : 'no /sys/kernel/btf/vmlinux';

/** A small deterministic PRNG (xorshift32), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

function codecOf(btf: Btf, name: string, kind: 'struct' | 'union' | 'enum' | 'enum64' | 'typedef' | 'datasec'): Codec {
  return new Codec(btf, btf.findType(name, kind).id);
}

/** Asserts that fn throws a TypeError whose message matches re. */
function refuses(tt: Test, fn: () => unknown, re: RegExp, msg?: string): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof TypeError && re.test(e.message)) {
      tt.pass(msg ?? String(re));
      return;
    }
    tt.fail(`${msg ?? String(re)}: threw ${String(e)}`);
    return;
  }
  tt.fail(`${msg ?? String(re)}: did not throw`);
}

// ---- hand-built BTF -------------------------------------------------------------------------------

function intT(name: string, size: number, signed: boolean, extra: Partial<BtfTypeInit & { kind: 'int' }> = {}): BtfTypeInit {
  return { kind: 'int', name, size, signed, char: false, bool: false, bitsOffset: 0, bits: size * 8, ...extra } as BtfTypeInit;
}

function handBuilt() {
  const btf = Btf.empty();
  const u8 = btf.addType(intT('unsigned char', 1, false));
  const s8 = btf.addType(intT('signed char', 1, true));
  const ch = btf.addType(intT('char', 1, true, { char: true }));
  const u16 = btf.addType(intT('unsigned short', 2, false));
  const s16 = btf.addType(intT('short', 2, true));
  const u32 = btf.addType(intT('unsigned int', 4, false));
  const s32 = btf.addType(intT('int', 4, true));
  const u64 = btf.addType(intT('unsigned long long', 8, false));
  const s64 = btf.addType(intT('long long', 8, true));
  const u128 = btf.addType(intT('unsigned __int128', 16, false));
  const s128 = btf.addType(intT('__int128', 16, true));
  const bool = btf.addType(intT('_Bool', 1, false, { bool: true }));
  const f32 = btf.addType({ kind: 'float', name: 'float', size: 4 });
  const f64 = btf.addType({ kind: 'float', name: 'double', size: 8 });
  const f128 = btf.addType({ kind: 'float', name: 'long double', size: 16 });
  const typedefU8 = btf.addType({ kind: 'typedef', name: '__u8', type: u8 });
  const constCh = btf.addType({ kind: 'const', name: '', type: ch });
  const volU32 = btf.addType({ kind: 'volatile', name: '', type: u32 });
  const typedefVol = btf.addType({ kind: 'typedef', name: 'vu32', type: volU32 });
  const ptr = btf.addType({ kind: 'ptr', name: '', type: u32 });
  const idx = u32;
  const arr = (type: number, nelems: number) => btf.addType({ kind: 'array', name: '', type, indexType: idx, nelems });
  const s3 = btf.addType(intT('int', 4, true, { bits: 3 })); // kind_flag 0 bitfield type
  const u5off = btf.addType(intT('unsigned int', 4, false, { bits: 5, bitsOffset: 2 }));
  const e32 = btf.addType({
    kind: 'enum', name: 'color', size: 4, signed: false,
    values: [{ name: 'RED', value: 0 }, { name: 'GREEN', value: 1 }, { name: 'BIG', value: 0xfffffff0 }],
  });
  const es = btf.addType({
    kind: 'enum', name: 'sign', size: 4, signed: true,
    values: [{ name: 'NEG', value: -2 }, { name: 'POS', value: 2 }],
  });
  const e64 = btf.addType({
    kind: 'enum64', name: 'wide', size: 8, signed: false,
    values: [{ name: 'W_SMALL', value: 1n }, { name: 'W_HUGE', value: 0xfedcba9876543210n }],
  });
  const e64s = btf.addType({
    kind: 'enum64', name: 'swide', size: 8, signed: true,
    values: [{ name: 'S_MIN', value: -(1n << 63n) }, { name: 'S_ONE', value: 1n }],
  });
  const m = (name: string, type: number, bitOffset: number, bitfieldSize = 0) => ({ name, type, bitOffset, bitfieldSize });
  // struct flags (kind_flag 1): { int a:3 (bit 0); unsigned b:7 (bit 3); int c:13 (bit 10, crosses bytes);
  //   u64 d:40 (bit 23); bool e:1 (bit 63); enum color f:2 (bit 64) ; int :4 (bit 66, unnamed) } 12 bytes
  const flags = btf.addType({
    kind: 'struct', name: 'flags', size: 12,
    members: [m('a', s32, 0, 3), m('b', u32, 3, 7), m('c', s32, 10, 13), m('d', u64, 23, 40), m('e', bool, 63, 1),
      m('f', e32, 64, 2), m('', s32, 66, 4)],
  });
  // struct old_flags (kind_flag 0): { int x:3 at bit 8 via int type bits=3; u5 at storage 4 with bitsOffset 2 }
  const oldFlags = btf.addType({
    kind: 'struct', name: 'old_flags', size: 8,
    members: [m('lead', u8, 0), m('x', s3, 8), m('y', u5off, 32)],
  });
  const inner = btf.addType({ kind: 'struct', name: 'pt', size: 4, members: [m('x', s16, 0), m('y', s16, 16)] });
  // union num { u64 u; s64 s; double d; struct pt p; u8 bytes[8]; }
  const num = btf.addType({
    kind: 'union', name: 'num', size: 8,
    members: [m('u', u64, 0), m('s', s64, 0), m('d', f64, 0), m('p', inner, 0), m('bytes', arr(typedefU8, 8), 0)],
  });
  const anonInner = btf.addType({ kind: 'struct', name: '', size: 8, members: [m('lo', u32, 0), m('hi', u32, 32)] });
  const anonUnion = btf.addType({ kind: 'union', name: '', size: 8, members: [m('whole', u64, 0), m('', anonInner, 0)] });
  const grid = arr(arr(s32, 3), 2); // int[2][3]
  const names = arr(arr(ch, 4), 2); // char[2][4]
  // struct all { u8 a; s8 b; char c; u16 d; s16 e; u32 f; s32 g; u64 h; s64 i; u128 j; s128 k; bool l;
  //   float m; double n; __u8 o[4]; const char p[6]; signed char q[3]; unsigned char r[3]; vu32 s;
  //   u32 *t; int grid[2][3]; char names[2][4]; struct pt pts[2]; enum color col; enum sign sg;
  //   enum wide w; enum swide sw; union { u64 whole; struct { u32 lo, hi; }; }; union num n2; }
  const members: { name: string; type: number }[] = [
    { name: 'a', type: u8 }, { name: 'b', type: s8 }, { name: 'c', type: ch }, { name: 'd', type: u16 },
    { name: 'e', type: s16 }, { name: 'f', type: u32 }, { name: 'g', type: s32 }, { name: 'h', type: u64 },
    { name: 'i', type: s64 }, { name: 'j', type: u128 }, { name: 'k', type: s128 }, { name: 'l', type: bool },
    { name: 'm', type: f32 }, { name: 'n', type: f64 }, { name: 'o', type: arr(typedefU8, 4) },
    { name: 'p', type: arr(constCh, 6) }, { name: 'q', type: arr(s8, 3) }, { name: 'r', type: arr(u8, 3) },
    { name: 's', type: typedefVol }, { name: 't', type: ptr }, { name: 'grid', type: grid },
    { name: 'names', type: names }, { name: 'pts', type: arr(inner, 2) }, { name: 'col', type: e32 },
    { name: 'sg', type: es }, { name: 'w', type: e64 }, { name: 'sw', type: e64s }, { name: '', type: anonUnion },
    { name: 'n2', type: num },
  ];
  let off = 0;
  const laid = members.map((x) => {
    const a = btf.alignof(x.type);
    off = Math.ceil(off / a) * a;
    const r = m(x.name, x.type, off * 8);
    off += btf.sizeof(x.type);
    return r;
  });
  const all = btf.addType({ kind: 'struct', name: 'all', size: Math.ceil(off / 16) * 16, members: laid });
  const fwd = btf.addType({ kind: 'fwd', name: 'opaque', fwdKind: 'struct' });
  const proto = btf.addType({ kind: 'func_proto', name: '', returnType: 0, params: [] });
  const func = btf.addType({ kind: 'func', name: 'f', type: proto, linkage: 'global' });
  return { btf, ids: { u8, s8, ch, u16, u32, s32, u64, u128, s128, bool, f32, f64, f128, ptr, e32, es, e64, e64s, flags, oldFlags, num, all, fwd, proto, func, s3, u5off, grid, names } };
}

// ---- random valid values, driven by BTF (the test's own walker) ---------------------------------

function randomValue(btf: Btf, id: number, r: () => number): unknown {
  const t = btf.resolve(id);
  const bigIn = (bits: number, signed: boolean): bigint => {
    let v = 0n;
    for (let i = 0; i < bits; i += 16) v = (v << 16n) | BigInt(Math.floor(r() * 65536));
    v = BigInt.asUintN(bits, v);
    return signed ? BigInt.asIntN(bits, v) : v;
  };
  const numIn = (bits: number, signed: boolean): number => Number(bigIn(bits, signed));
  switch (t.kind) {
    case 'int':
      if (t.bool) return r() < 0.5;
      if (t.bits !== t.size * 8) return t.size > 4 ? bigIn(t.bits, t.signed) : numIn(t.bits, t.signed);
      return t.size > 4 ? bigIn(t.size * 8, t.signed) : numIn(t.size * 8, t.signed);
    case 'ptr':
      return bigIn(64, false);
    case 'float':
      return t.size === 4 ? Math.fround((r() - 0.5) * 1e6) : (r() - 0.5) * 1e300;
    case 'enum':
    case 'enum64':
      if (r() < 0.5) return t.values[Math.floor(r() * t.values.length)]!.value;
      return t.size > 4 ? bigIn(64, t.signed) : numIn(32, t.signed);
    case 'array': {
      let e = btf.type(t.type);
      while (e.kind === 'const' || e.kind === 'volatile') e = btf.type(e.type);
      if (e.kind === 'int' && e.size === 1 && (e.char || ['char', 'signed char', 'unsigned char'].includes(e.name))) {
        const len = Math.floor(r() * t.nelems);
        let s = '';
        for (let i = 0; i < len; i++) s += String.fromCharCode(32 + Math.floor(r() * 95));
        return s;
      }
      return Array.from({ length: t.nelems }, () => randomValue(btf, t.type, r));
    }
    case 'struct':
    case 'union': {
      const o: Record<string, unknown> = {};
      const ms = t.kind === 'union' ? [t.members[Math.floor(r() * t.members.length)]!] : t.members;
      for (const mm of ms) {
        if (mm.name === '') {
          if (mm.bitfieldSize) continue;
          Object.assign(o, randomValue(btf, mm.type, r));
          continue;
        }
        if (mm.bitfieldSize) {
          const bt = btf.resolve(mm.type) as BtfType & { signed: boolean; size: number };
          if (bt.kind === 'int' && bt.bool) o[mm.name] = r() < 0.5;
          else if (bt.kind === 'enum') o[mm.name] = numIn(mm.bitfieldSize, false);
          else o[mm.name] = bt.size > 4 ? bigIn(mm.bitfieldSize, bt.signed) : numIn(mm.bitfieldSize, bt.signed);
        } else o[mm.name] = randomValue(btf, mm.type, r);
      }
      return o;
    }
    default:
      throw new Error(`no random ${t.kind}`);
  }
}

// ---- real objects ---------------------------------------------------------------------------------

t.test('runqlat struct hist', (tt) => {
  const btf = loadCollectionSpec(obj('runqlat.o')).btf!;
  const c = codecOf(btf, 'hist', 'struct');
  tt.equal(c.size, 120);
  const zero = Buffer.alloc(120);
  tt.same(c.decode(zero), { slots: new Array(26).fill(0), comm: '' });
  const slots = Array.from({ length: 26 }, (_, i) => (i * 2654435761) >>> 0);
  const v = { slots, comm: 'kworker/0:1' };
  const bytes = c.encode(v);
  tt.equal(bytes.length, 120);
  tt.equal(bytes.readUInt32LE(4 * 25), slots[25]);
  tt.equal(bytes.toString('latin1', 104, 115), 'kworker/0:1');
  tt.ok(bytes.subarray(115).every((x) => x === 0), 'NUL-padded');
  tt.strictSame(c.decode(bytes), v);
  // The string stops at the first NUL, whatever follows.
  const dirty = Buffer.from(bytes);
  dirty.write('ab\0garbage', 104, 'latin1');
  tt.equal((c.decode(dirty) as { comm: string }).comm, 'ab');
  // UTF-8 and the full 15 bytes.
  tt.equal((c.decode(c.encode({ comm: 'é'.repeat(7) + 'x' })) as { comm: string }).comm, 'é'.repeat(7) + 'x');
  // Missing members and missing trailing array elements are zero.
  tt.strictSame(c.decode(c.encode({ slots: [7] })), { slots: [7, ...new Array(25).fill(0)], comm: '' });
  tt.strictSame(c.decode(c.encode({})), c.decode(zero));
  // Offsets and existing buffers.
  const big = Buffer.alloc(300, 0xaa);
  tt.equal(c.encode(v, big, 100), big);
  tt.equal(big[99], 0xaa);
  tt.equal(big[220], 0xaa);
  tt.strictSame(c.decode(big, 100), v);
  tt.strictSame(c.decode(new Uint8Array(big.buffer, big.byteOffset + 100, 120)), v, 'plain Uint8Array');
  // Raw bytes at the top and nested.
  tt.strictSame(c.decode(c.encode(bytes)), v);
  tt.not(c.encode(bytes), bytes, 'copied');
  const commBytes = Buffer.alloc(16);
  commBytes.write('raw');
  tt.equal((c.decode(c.encode({ comm: commBytes })) as { comm: string }).comm, 'raw');
  const slotBytes = Buffer.alloc(104);
  slotBytes.writeUInt32LE(9, 8);
  tt.equal((c.decode(c.encode({ slots: slotBytes })) as { slots: number[] }).slots[2], 9);
  tt.equal((c.decode(c.encode({ slots: Uint32Array.of(1, 2, 3) })) as { slots: number[] }).slots[2], 3, 'typed arrays as lists');

  // An unterminated char array decodes to all its bytes, and that string does not encode back.
  const full = Buffer.from(bytes);
  full.fill(0x61, 104);
  tt.equal((c.decode(full) as { comm: string }).comm, 'a'.repeat(16));
  refuses(tt, () => c.encode(c.decode(full)), /^value\.comm: .* is 16 bytes, char\[16\] holds at most 15 plus a NUL$/);
  // Random bytes with a terminated ASCII comm survive decode → encode.
  const r = rng(11);
  for (let i = 0; i < 50; i++) {
    const rb = Buffer.from(Array.from({ length: 120 }, (_, j) => (j < 104 ? Math.floor(r() * 256) : j < 110 ? 0x41 + Math.floor(r() * 26) : 0)));
    if (!c.encode(c.decode(rb)).equals(rb)) {
      tt.fail(`encode(decode(b)) != b for ${rb.toString('hex')}`);
      break;
    }
  }

  // Refusals, each naming the field.
  refuses(tt, () => c.encode({ slots: [0, 0, 0, 4294967296] }), /^value\.slots\[3\]: 4294967296 does not fit u32$/);
  refuses(tt, () => c.encode({ slots: [-1] }), /^value\.slots\[0\]: -1 does not fit u32$/);
  refuses(tt, () => c.encode({ slots: [1.5] }), /^value\.slots\[0\]: 1\.5 does not fit u32$/);
  refuses(tt, () => c.encode({ slots: [1n] }), /^value\.slots\[0\]: expected a number for u32, got 1n$/);
  refuses(tt, () => c.encode({ slots: ['1'] }), /^value\.slots\[0\]: expected a number/);
  refuses(tt, () => c.encode({ slots: new Array(27).fill(0) }), /^value\.slots: 27 elements do not fit u32\[26\]$/);
  refuses(tt, () => c.encode({ slots: 5 }), /^value\.slots: expected an array for u32\[26\], got 5$/);
  refuses(tt, () => c.encode({ slots: Buffer.alloc(103) }), /^value\.slots: u32\[26\] is 104 bytes, got a 103-byte Buffer$/);
  refuses(tt, () => c.encode({ comm: 'x'.repeat(16) }), /^value\.comm: .* is 16 bytes, char\[16\] holds at most 15 plus a NUL$/);
  refuses(tt, () => c.encode({ comm: 'é'.repeat(8) }), /^value\.comm: .* is 16 bytes/);
  refuses(tt, () => c.encode({ comm: 'a\0b' }), /^value\.comm: .* contains a NUL/);
  refuses(tt, () => c.encode({ comm: ['a'] }), /^value\.comm: expected a string for char\[16\], got an array$/);
  refuses(tt, () => c.encode({ slots: [], extra: 1 }), /^value: struct hist has no member "extra"$/);
  refuses(tt, () => c.encode(null), /^value: expected an object for struct hist, got null$/);
  refuses(tt, () => c.encode([1]), /^value: expected an object/);
  refuses(tt, () => c.encode(7), /^value: expected an object/);
  refuses(tt, () => c.encode(Buffer.alloc(119)), /^value: struct hist is 120 bytes, got a 119-byte Buffer$/);
  refuses(tt, () => c.encode(v, Buffer.alloc(150), 31), /cannot encode 120 bytes at offset 31 of a 150-byte buffer/);
  refuses(tt, () => c.encode(v, 'x' as unknown as Buffer), /expected a Buffer to encode into/);
  refuses(tt, () => c.decode(Buffer.alloc(119)), /cannot decode 120 bytes at offset 0 of a 119-byte buffer/);
  refuses(tt, () => c.decode(Buffer.alloc(200), 81), /cannot decode/);
  refuses(tt, () => c.decode('x' as unknown as Buffer), /expected a Buffer or Uint8Array/);
  // A refused value leaves the output buffer alone.
  const keep = Buffer.alloc(120, 0x55);
  tt.throws(() => c.encode({ slots: [1, 2, -3] }, keep));
  tt.ok(keep.every((x) => x === 0x55));
  tt.end();
});

t.test('runqslower struct event', (tt) => {
  const btf = loadCollectionSpec(obj('runqslower.o')).btf!;
  // clang keeps no BTF for struct event (a local that only goes to bpf_perf_event_output): add it as
  // runq.h declares it, from the object's own char, __u64 and pid_t.
  const charArr = btf.addType({ kind: 'array', name: '', type: btf.findType('char', 'int').id, indexType: btf.findType('int', 'int').id, nelems: 16 });
  const field = (name: string, type: number, byte: number) => ({ name, type, bitOffset: byte * 8, bitfieldSize: 0 });
  btf.addType({
    kind: 'struct', name: 'event', size: 48,
    members: [field('task', charArr, 0), field('prev_task', charArr, 16), field('delta_us', btf.findType('__u64', 'typedef').id, 32),
      field('pid', btf.findType('pid_t', 'typedef').id, 40), field('prev_pid', btf.findType('pid_t', 'typedef').id, 44)],
  });
  const c = codecOf(btf, 'event', 'struct');
  // The object's own (CO-RE local) task_struct decodes too.
  const task = codecOf(btf, 'task_struct', 'struct');
  const tv = task.decode(Buffer.alloc(task.size)) as Record<string, unknown>;
  tt.equal(tv.comm, '');
  tt.ok(task.encode(tv).equals(Buffer.alloc(task.size)));
  tt.equal(c.size, 48);
  const v = { task: 'node', prev_task: 'swapper/3', delta_us: 123456789012n, pid: -1, prev_pid: 2147483647 };
  const b = c.encode(v);
  tt.equal(b.readBigUInt64LE(32), 123456789012n);
  tt.equal(b.readInt32LE(40), -1);
  tt.strictSame(c.decode(b), v, 'pid_t is signed (typedef followed)');
  refuses(tt, () => c.encode({ delta_us: 5 }), /^value\.delta_us: expected a bigint for u64, got 5$/);
  refuses(tt, () => c.encode({ delta_us: -1n }), /^value\.delta_us: -1 does not fit u64$/);
  refuses(tt, () => c.encode({ delta_us: 1n << 64n }), /^value\.delta_us: 18446744073709551616 does not fit u64$/);
  refuses(tt, () => c.encode({ pid: 2147483648 }), /^value\.pid: 2147483648 does not fit s32$/);
  // Round trip of random valid events.
  const r = rng(1);
  for (let i = 0; i < 200; i++) {
    const x = randomValue(btf, btf.findType('event', 'struct').id, r);
    if (!isDeepStrictEqual(c.decode(c.encode(x)), x)) {
      tt.fail(`round trip of ${String(x)}`);
      break;
    }
  }
  tt.end();
});

t.test('a datasec decodes as an object of its variables', (tt) => {
  const spec = loadCollectionSpec(obj('loader.o'));
  const btf = spec.btf!;
  const sec = btf.findType('.rodata', 'datasec');
  const c = new Codec(btf, sec.id);
  const v = c.decode(Buffer.alloc(c.size)) as Record<string, unknown>;
  tt.equal(v.multiplier, 0);
  tt.equal(v.magic, 0n);
  tt.strictSame(c.decode(c.encode({ multiplier: 3, magic: 42n })), { ...v, multiplier: 3, magic: 42n });
  tt.end();
});

t.test('codecFor caches per (btf, typeId); sizeless types are refused', (tt) => {
  const { btf, ids } = handBuilt();
  tt.equal(codecFor(btf, ids.all), codecFor(btf, ids.all));
  tt.not(codecFor(btf, ids.all), codecFor(handBuilt().btf, ids.all));
  tt.not(codecFor(btf, ids.all), codecFor(btf, ids.flags));
  for (const id of [0, ids.fwd, ids.proto, ids.func]) tt.throws(() => new Codec(btf, id), BtfError);
  tt.throws(() => codecFor(btf, 99999), BtfError);
  tt.end();
});

t.test('hand-built: every scalar kind', (tt) => {
  const { btf, ids } = handBuilt();
  const c = new Codec(btf, ids.all);
  tt.equal(c.size, btf.sizeof(ids.all));
  const zero = c.decode(Buffer.alloc(c.size)) as Record<string, unknown>;
  tt.strictSame(zero, {
    a: 0, b: 0, c: 0, d: 0, e: 0, f: 0, g: 0, h: 0n, i: 0n, j: 0n, k: 0n, l: false, m: 0, n: 0,
    o: [0, 0, 0, 0], p: '', q: '', r: '', s: 0, t: 0n, grid: [[0, 0, 0], [0, 0, 0]], names: ['', ''],
    pts: [{ x: 0, y: 0 }, { x: 0, y: 0 }], col: 0, sg: 0, w: 0n, sw: 0n, whole: 0n, lo: 0, hi: 0,
    n2: { u: 0n, s: 0n, d: 0, p: { x: 0, y: 0 }, bytes: [0, 0, 0, 0, 0, 0, 0, 0] },
  }, 'shape: __u8 arrays stay numbers, char/signed char/unsigned char arrays are strings, anonymous union flattened');
  const v = {
    a: 255, b: -128, c: -1, d: 65535, e: -32768, f: 4294967295, g: -2147483648,
    h: 18446744073709551615n, i: -9223372036854775808n, j: (1n << 128n) - 1n, k: -(1n << 127n), l: true,
    m: 1.5, n: -Math.PI, o: [1, 2, 3, 255], p: 'hello', q: 'ab', r: 'xy', s: 7, t: 0xffff888012345678n,
    grid: [[1, -2, 3], [-4, 5, -6]], names: ['abc', 'd'], pts: [{ x: -1, y: 1 }, { x: 300, y: -300 }],
    col: 0xfffffff0, sg: -2, w: 0xfedcba9876543210n, sw: -(1n << 63n), lo: 1, hi: 2,
  };
  const b = c.encode(v);
  const d = c.decode(b) as Record<string, unknown>;
  const { lo: _lo, hi: _hi, ...rest } = v;
  tt.match(d, rest);
  tt.equal(d.whole, (2n << 32n) | 1n, 'anonymous struct in anonymous union');
  tt.strictSame((d.n2 as Record<string, unknown>).bytes, [0, 0, 0, 0, 0, 0, 0, 0]);
  tt.strictSame(c.decode(b, 0, { enumNames: true }), { ...d, col: 'BIG', sg: 'NEG', w: 'W_HUGE', sw: 'S_MIN' });
  tt.strictSame(c.decode(c.encode({ col: 'GREEN', sg: 'POS', w: 'W_SMALL', sw: 'S_ONE' }), 0, { enumNames: true }), {
    ...zero, col: 'GREEN', sg: 'POS', w: 'W_SMALL', sw: 'S_ONE',
  }, 'enums by name');
  tt.equal((c.decode(c.encode({ col: 77 }), 0, { enumNames: true }) as { col: unknown }).col, 77, 'unnamed values stay numbers');
  // f32 rounds; f64 is exact.
  tt.equal((c.decode(c.encode({ m: 0.1 })) as { m: number }).m, Math.fround(0.1));
  tt.ok(Number.isNaN((c.decode(c.encode({ n: NaN })) as { n: number }).n));
  tt.equal((c.decode(c.encode({ m: -Infinity })) as { m: number }).m, -Infinity);

  const bad: [unknown, RegExp][] = [
    [{ a: 256 }, /^value\.a: 256 does not fit u8$/],
    [{ b: -129 }, /^value\.b: -129 does not fit s8$/],
    [{ d: 65536 }, /^value\.d: 65536 does not fit u16$/],
    [{ e: 32768 }, /^value\.e: 32768 does not fit s16$/],
    [{ g: 2 ** 31 }, /^value\.g: 2147483648 does not fit s32$/],
    [{ i: 1n << 63n }, /^value\.i: 9223372036854775808 does not fit s64$/],
    [{ j: 1n << 128n }, /^value\.j: \d+ does not fit u128$/],
    [{ k: 1n << 127n }, /^value\.k: \d+ does not fit s128$/],
    [{ j: 1 }, /^value\.j: expected a bigint for u128, got 1$/],
    [{ l: 1 }, /^value\.l: expected a boolean for bool, got 1$/],
    [{ m: 1e39 }, /^value\.m: 1e\+39 does not fit float \(f32\)$/],
    [{ m: 1n }, /^value\.m: expected a number for float, got 1n$/],
    [{ n: '1' }, /^value\.n: expected a number for double, got the string "1"$/],
    [{ o: 'abc' }, /^value\.o: expected an array for u8\[4\], got the string "abc"$/],
    [{ o: [1, 2, 256] }, /^value\.o\[2\]: 256 does not fit u8$/],
    [{ p: 'sixsix' }, /^value\.p: .* is 6 bytes, char\[6\] holds at most 5 plus a NUL$/],
    [{ t: 1 }, /^value\.t: expected a bigint for a pointer, got 1$/],
    [{ t: -1n }, /^value\.t: -1 does not fit a pointer$/],
    [{ grid: [[1, 2, 3], [4, 5, 6, 7]] }, /^value\.grid\[1\]: 4 elements do not fit s32\[3\]$/],
    [{ grid: [[1, 2, 3], [4, 5, 2 ** 31]] }, /^value\.grid\[1\]\[2\]: 2147483648 does not fit s32$/],
    [{ names: ['abcd'] }, /^value\.names\[0\]: .* is 4 bytes, char\[4\] holds at most 3 plus a NUL$/],
    [{ pts: [{ x: 1 }, { z: 1 }] }, /^value\.pts\[1\]: struct pt has no member "z"$/],
    [{ pts: [{ x: 1 }, { y: 40000 }] }, /^value\.pts\[1\]\.y: 40000 does not fit s16$/],
    [{ col: 'BLUE' }, /^value\.col: enum color has no value named "BLUE"$/],
    [{ col: -1 }, /^value\.col: -1 does not fit enum color$/],
    [{ sg: 2 ** 31 }, /^value\.sg: 2147483648 does not fit enum sign$/],
    [{ w: 1 }, /^value\.w: expected a bigint for enum64 wide, got 1$/],
    [{ sw: 1n << 63n }, /^value\.sw: \d+ does not fit enum64 swide$/],
    [{ lo: 2 ** 32 }, /^value\.lo: 4294967296 does not fit u32$/],
    [{ whole: 1n, lo: 2 }, /^value: members "whole" and "lo" of union disagree at byte 0: give one of them$/],
    [{ n2: { q: 1 } }, /^value\.n2: union num has no member "q"$/],
    [{ n2: 5 }, /^value\.n2: expected an object for union num, got 5$/],
    [{ n2: { u: 1n, s: 2n } }, /^value\.n2: members "u" and "s" of union num disagree at byte 0/],
    [{ n2: { u: 1n, p: { x: 2 } } }, /^value\.n2: members "u" and "p" of union num disagree at byte 0/],
    [{ n2: { p: { x: 1.5 } } }, /^value\.n2\.p\.x: 1\.5 does not fit s16$/],
    [{ zz: 1 }, /^value: struct all has no member "zz"$/],
  ];
  for (const [x, re] of bad) refuses(tt, () => c.encode(x), re);
  tt.end();
});

t.test('hand-built: unions', (tt) => {
  const { btf, ids } = handBuilt();
  const c = new Codec(btf, ids.num);
  tt.equal(c.size, 8);
  const one = c.decode(c.encode({ s: -2n })) as Record<string, unknown>;
  tt.strictSame(one, { u: (1n << 64n) - 2n, s: -2n, d: NaN, p: { x: -2, y: -1 }, bytes: [254, 255, 255, 255, 255, 255, 255, 255] });
  tt.strictSame(c.decode(c.encode(one)), one, 'a decoded union encodes back (members agree)');
  tt.strictSame(c.decode(c.encode({ u: 5n, p: { x: 5 } })), c.decode(c.encode({ u: 5n })), 'agreeing members');
  tt.strictSame(c.decode(c.encode({ p: { x: 9, y: 1 }, u: 0x10009n, bytes: [9, 0, 1, 0, 0, 0, 0, 0] })), c.decode(c.encode({ u: 0x10009n })), 'several agreeing members');
  refuses(tt, () => c.encode({ p: { y: 1 }, bytes: [9] }), /^value: members "p" and "bytes" of union num disagree at byte 0/, 'missing members are zero, and count');
  tt.strictSame(c.decode(c.encode({})), c.decode(Buffer.alloc(8)), 'no member: zero');
  tt.strictSame(c.decode(c.encode(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]))), c.decode(c.encode({ u: 1n })));
  // Padding of a struct member does not conflict: union { u64; struct { u8 a; u32 b; } } with bytes 1..3 set.
  const b2 = Btf.empty();
  const u8 = b2.addType(intT('unsigned char', 1, false));
  const u32 = b2.addType(intT('unsigned int', 4, false));
  const u64 = b2.addType(intT('unsigned long', 8, false));
  const padded = b2.addType({ kind: 'struct', name: 'padded', size: 8, members: [
    { name: 'a', type: u8, bitOffset: 0, bitfieldSize: 0 }, { name: 'b', type: u32, bitOffset: 32, bitfieldSize: 0 }] });
  const un = b2.addType({ kind: 'union', name: 'u', size: 8, members: [
    { name: 'raw', type: u64, bitOffset: 0, bitfieldSize: 0 }, { name: 's', type: padded, bitOffset: 0, bitfieldSize: 0 }] });
  const cu = new Codec(b2, un);
  const bytes = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
  tt.strictSame(cu.encode(cu.decode(bytes)), bytes, 'padding bytes come from the member that covers them');
  tt.end();
});

t.test('hand-built: bitfields, both encodings', (tt) => {
  const { btf, ids } = handBuilt();
  const c = new Codec(btf, ids.flags);
  tt.equal(c.size, 12);
  const v = { a: -4, b: 127, c: -4096, d: (1n << 40n) - 1n, e: true, f: 3 };
  const b = c.encode(v);
  tt.strictSame(c.decode(b), v, 'signed bitfields sign-extended, u64 bitfield is a bigint');
  // Check the bits by hand: a = 0b100 at bit 0, b = 127 at bit 3.
  const bits = (p: number, w: number) => (BigInt('0x' + Buffer.from(b).reverse().toString('hex')) >> BigInt(p)) & ((1n << BigInt(w)) - 1n);
  tt.equal(bits(0, 3), 4n);
  tt.equal(bits(3, 7), 127n);
  tt.equal(bits(10, 13), BigInt.asUintN(13, -4096n));
  tt.equal(bits(23, 40), (1n << 40n) - 1n);
  tt.equal(bits(63, 1), 1n);
  tt.equal(bits(64, 2), 3n);
  tt.equal(bits(66, 30), 0n, 'the unnamed bitfield and the rest stay zero');
  // Each field alone touches only its bits.
  const sparse = c.encode({ c: 1 });
  tt.equal(bits.call(null, 0, 0), 0n);
  tt.equal(BigInt('0x' + Buffer.from(sparse).reverse().toString('hex')), 1n << 10n);
  tt.strictSame(c.decode(Buffer.alloc(12, 0xff)), { a: -1, b: 127, c: -1, d: (1n << 40n) - 1n, e: true, f: 3 });
  tt.strictSame(c.decode(Buffer.alloc(12, 0xff), 0, { enumNames: true }), { a: -1, b: 127, c: -1, d: (1n << 40n) - 1n, e: true, f: 3 }, 'no name for 3');
  tt.equal((c.decode(c.encode({ f: 'GREEN' }), 0, { enumNames: true }) as { f: unknown }).f, 'GREEN');
  refuses(tt, () => c.encode({ a: 4 }), /^value\.a: 4 does not fit a 3-bit signed bitfield$/);
  refuses(tt, () => c.encode({ a: -5 }), /^value\.a: -5 does not fit a 3-bit signed bitfield$/);
  refuses(tt, () => c.encode({ b: 128 }), /^value\.b: 128 does not fit a 7-bit unsigned bitfield$/);
  refuses(tt, () => c.encode({ d: 1n << 40n }), /^value\.d: 1099511627776 does not fit a 40-bit unsigned bitfield$/);
  refuses(tt, () => c.encode({ d: 1 }), /^value\.d: expected a bigint for a 40-bit unsigned bitfield/);
  refuses(tt, () => c.encode({ e: 1 }), /^value\.e: expected a boolean/);
  refuses(tt, () => c.encode({ f: 'BIG' }), /^value\.f: 4294967280 does not fit a 2-bit unsigned bitfield$/);
  refuses(tt, () => c.encode({ f: 'NOPE' }), /^value\.f: enum color has no value named "NOPE"$/);

  const old = new Codec(btf, ids.oldFlags);
  const ob = old.encode({ lead: 0xff, x: -3, y: 31 });
  tt.strictSame(old.decode(ob), { lead: 0xff, x: -3, y: 31 });
  tt.equal(ob[1], 0b101, 'kind_flag 0: x at bit 8, 3 bits');
  tt.equal(ob.readUInt32LE(4), 31 << 2, 'kind_flag 0: y at bit 32 + BTF_INT_OFFSET 2');
  refuses(tt, () => old.encode({ x: 4 }), /^value\.x: 4 does not fit a 3-bit signed bitfield$/);
  // A narrow int type on its own.
  const lone = new Codec(btf, ids.u5off);
  tt.equal(lone.size, 4);
  tt.equal(lone.encode(31).readUInt32LE(0), 31 << 2);
  tt.equal(lone.decode(Buffer.from([0xff, 0xff, 0xff, 0xff])), 31);
  refuses(tt, () => lone.encode(32), /^value: 32 does not fit a 5-bit unsigned unsigned int$/);

  // Random round trips.
  const r = rng(7);
  for (let i = 0; i < 500; i++) {
    const x = randomValue(btf, ids.flags, r);
    const y = c.decode(c.encode(x));
    if (!isDeepStrictEqual(y, x)) {
      tt.fail(`flags round trip: ${JSON.stringify(x, (_k, z) => (typeof z === 'bigint' ? `${z}n` : z))}`);
      break;
    }
  }
  tt.end();
});

t.test('hand-built: scalar codecs at the top level and round-trip properties', (tt) => {
  const { btf, ids } = handBuilt();
  tt.equal(new Codec(btf, ids.s32).decode(new Codec(btf, ids.s32).encode(-5)), -5);
  tt.equal(new Codec(btf, ids.bool).decode(Buffer.from([2])), true);
  tt.equal(new Codec(btf, ids.e64).decode(Buffer.from('1032547698badcfe', 'hex'), 0, { enumNames: true }), 'W_HUGE');
  tt.strictSame(new Codec(btf, ids.grid).decode(new Codec(btf, ids.grid).encode([[1], [2, 3]])), [[1, 0, 0], [2, 3, 0]]);
  tt.strictSame(new Codec(btf, ids.names).encode(['a', 'bcd']), Buffer.from('a\0\0\0bcd\0', 'latin1'));
  const ld = new Codec(btf, ids.f128);
  tt.equal(ld.size, 16);
  const raw = Buffer.alloc(16, 3);
  tt.strictSame(ld.decode(raw), raw, 'long double as raw bytes');
  tt.strictSame(ld.encode(raw), raw);
  refuses(tt, () => ld.encode(1.5), /^value: long double \(16 bytes\) can only be given as a Buffer of 16 bytes, got 1\.5$/);

  const c = new Codec(btf, ids.all);
  const r = rng(42);
  let failures = 0;
  for (let i = 0; i < 300 && failures === 0; i++) {
    const x = randomValue(btf, ids.all, r) as Record<string, unknown>;
    const bytes = c.encode(x);
    const y = c.decode(bytes) as Record<string, unknown>;
    // Unions decode every member: compare what was given, and the bytes for the rest.
    const given = Object.fromEntries(Object.entries(x).filter(([k]) => k !== 'n2'));
    const got = Object.fromEntries(Object.keys(given).map((k) => [k, y[k]]));
    if (!isDeepStrictEqual(got, given)) failures++;
    if (!c.encode(y).equals(bytes)) failures++;
    for (const [k, val] of Object.entries(x.n2 as object)) if (!isDeepStrictEqual((y.n2 as Record<string, unknown>)[k], val)) failures++;
  }
  tt.equal(failures, 0, 'decode(encode(v)) gives v back, encode(decode(b)) gives b back');
  tt.end();
});

t.test('kernel BTF', { skip: noVmlinux }, (tt) => {
  const k = loadKernelBtf();

  tt.test('task_struct', (t2) => {
    const c = codecOf(k, 'task_struct', 'struct');
    t2.equal(c.size, k.sizeof(k.findType('task_struct', 'struct').id));
    const zero = Buffer.alloc(c.size);
    const v = c.decode(zero) as Record<string, unknown>;
    t2.equal(v.comm, '');
    t2.equal(v.pid, 0);
    t2.equal(v.tgid, 0);
    t2.equal(typeof v.se, 'object');
    t2.equal(v.real_parent, 0n, 'pointers are bigints');
    t2.ok(c.encode(v).equals(zero), 'encodes back');
    const w = c.decode(c.encode({ ...v, comm: 'node', pid: 1234 })) as Record<string, unknown>;
    t2.equal(w.comm, 'node');
    t2.equal(w.pid, 1234);
    // Random bytes decode, and the decoded value encodes back to a value that decodes the same.
    const r = rng(3);
    const rand = Buffer.from(Array.from({ length: c.size }, () => Math.floor(r() * 256)));
    const d = c.decode(rand);
    t2.ok(d, 'random bytes decode');
    t2.end();
  });

  tt.test('sock_common: anonymous unions flattened', (t2) => {
    const c = codecOf(k, 'sock_common', 'struct');
    const v = c.decode(Buffer.alloc(c.size)) as Record<string, unknown>;
    for (const name of ['skc_addrpair', 'skc_daddr', 'skc_rcv_saddr', 'skc_hash', 'skc_portpair', 'skc_dport', 'skc_num', 'skc_family']) {
      t2.ok(Object.hasOwn(v, name), name);
    }
    t2.notOk(Object.hasOwn(v, ''), 'no empty key');
    const w = c.decode(c.encode({ skc_daddr: 0x0100007f, skc_rcv_saddr: 0x0200007f })) as Record<string, unknown>;
    t2.equal(w.skc_addrpair, (0x0200007fn << 32n) | 0x0100007fn);
    t2.strictSame(c.decode(c.encode(w)), w);
    refuses(t2, () => c.encode({ skc_addrpair: 1n, skc_daddr: 2 }), /^value: members "skc_addrpair" and "skc_daddr" of union disagree/);
    refuses(t2, () => c.encode({ skc_daddr: -1 }), /^value\.skc_daddr: -1 does not fit u32$/);
    t2.end();
  });

  tt.test('bitfields in sk_buff', (t2) => {
    const st = k.findType('sk_buff', 'struct') as Extract<BtfType, { kind: 'struct' }>;
    const c = new Codec(k, st.id);
    // Find the named bitfields, wherever the anonymous members put them.
    const found: { name: string; pos: number; width: number }[] = [];
    const walk = (id: number, base: number) => {
      const tt2 = k.resolve(id);
      if (tt2.kind !== 'struct' && tt2.kind !== 'union') return;
      for (const m of tt2.members) {
        if (m.name === '' && !m.bitfieldSize) walk(m.type, base + m.bitOffset);
        else if (m.bitfieldSize && m.name) found.push({ name: m.name, pos: base + m.bitOffset, width: m.bitfieldSize });
      }
    };
    walk(st.id, 0);
    t2.ok(found.length > 10, `${found.length} bitfields`);
    const pkt = found.find((f) => f.name === 'pkt_type');
    t2.ok(pkt, 'pkt_type');
    for (const f of found) {
      const max = 2 ** f.width - 1;
      const b = c.encode({ [f.name]: max });
      let ok = true;
      for (let i = 0; i < c.size * 8; i++) {
        const set = (b[i >> 3]! >> (i & 7)) & 1;
        if (set !== (i >= f.pos && i < f.pos + f.width ? 1 : 0)) ok = false;
      }
      t2.ok(ok, `${f.name}: ${f.width} bits at ${f.pos}`);
      t2.equal((c.decode(b) as Record<string, unknown>)[f.name], max);
    }
    if (pkt) refuses(t2, () => c.encode({ pkt_type: 8 }), /^value\.pkt_type: 8 does not fit a 3-bit unsigned bitfield$/);
    t2.end();
  });

  tt.test('enum bpf_map_type', (t2) => {
    const c = codecOf(k, 'bpf_map_type', 'enum');
    t2.equal(c.size, 4);
    const b = c.encode('BPF_MAP_TYPE_HASH');
    t2.equal(c.decode(b), 1);
    t2.equal(c.decode(b, 0, { enumNames: true }), 'BPF_MAP_TYPE_HASH');
    t2.equal(c.decode(c.encode(2), 0, { enumNames: true }), 'BPF_MAP_TYPE_ARRAY');
    refuses(t2, () => c.encode('BPF_MAP_TYPE_NOPE'), /^value: enum bpf_map_type has no value named "BPF_MAP_TYPE_NOPE"$/);
    t2.end();
  });

  tt.test('every struct and union of vmlinux compiles and round-trips zero', (t2) => {
    let n = 0;
    const failed: string[] = [];
    for (let id = 1; id < k.length; id++) {
      const ty = k.type(id);
      if (ty.kind !== 'struct' && ty.kind !== 'union') continue;
      n++;
      try {
        const c = codecFor(k, id);
        const zero = Buffer.alloc(c.size);
        if (!c.encode(c.decode(zero)).equals(zero)) failed.push(`${ty.kind} ${ty.name}: round trip`);
      } catch (e) {
        failed.push(`${ty.kind} ${ty.name}: ${(e as Error).message}`);
      }
    }
    t2.strictSame(failed.slice(0, 20), [], `${n} types`);
    t2.end();
  });
  tt.end();
});
