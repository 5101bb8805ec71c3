// CO-RE relocation (src/btf/core.ts).
//
//  - unit tests on hand-built BTF and instructions: every relocation kind, the
//    compatibility and "types match" rules, flavors, ambiguity, pruning,
//    module fallback, instruction patching and libbpf's checks and errors;
//  - bpf/core_kernel.o relocated against the running kernel's BTF and
//    bpf/core_self.o against bpf/core_target.o's BTF, instruction by
//    instruction against libbpf (a small libbpf program compiled here);
//  - the same objects loaded with Collection and test-run: each program
//    checks the relocated values itself and returns 0 or the failing line.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Collection, loadCollectionSpec, setVariable, VerifierError } from '../src/index.js';
import { Btf, CORE_RELO_KIND as K, loadBtfFile, loadKernelBtf, type BtfType, type CoreRelo } from '../src/btf/index.js';
import {
  applyCoreRelocations, CoreCandidateCache, CORE_POISON_IMM, CORE_RELO_KIND_NAMES, essentialName, type CoreResult,
} from '../src/btf/core.js';
import { linkProgram } from '../src/collection/linker.js';
import type { CollectionSpec } from '../src/elf/spec.js';
import { obj } from './helpers/env.js';

const hasVmlinux = existsSync('/sys/kernel/btf/vmlinux');
const isRoot = process.getuid?.() === 0;
const noRoot = !isRoot && 'needs root';

// ---- instructions ----

const OP = {
  MOV64_IMM: 0xb7,
  MOV32_IMM: 0xb4,
  ADD64_IMM: 0x07,
  ADD64_REG: 0x0f,
  LDXB: 0x71,
  LDXH: 0x69,
  LDXW: 0x61,
  LDXDW: 0x79,
  STH: 0x6a,
  STW: 0x62,
  STXH: 0x6b,
  STXW: 0x63,
  LDDW: 0x18,
  LDABSW: 0x20,
  JA: 0x05,
  EXIT: 0x95,
  CALL: 0x85,
} as const;

function insn(code: number, dst = 0, src = 0, off = 0, imm = 0): Buffer {
  const b = Buffer.alloc(8);
  b[0] = code;
  b[1] = (src << 4) | dst;
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm | 0, 4);
  return b;
}

/** ld_imm64 of a 64-bit value: two slots. */
function lddw(dst: number, v: bigint): Buffer {
  const u = BigInt.asUintN(64, v);
  return Buffer.concat([insn(OP.LDDW, dst, 0, 0, Number(u & 0xffffffffn)), insn(0, 0, 0, 0, Number(u >> 32n))]);
}

const prog = (...parts: Buffer[]): Buffer => Buffer.concat([...parts, insn(OP.EXIT)]);
const code = (b: Buffer, i: number): number => b[i * 8]!;
const off16 = (b: Buffer, i: number): number => b.readInt16LE(i * 8 + 2);
const imm32 = (b: Buffer, i: number): number => b.readInt32LE(i * 8 + 4);
const imm64 = (b: Buffer, i: number): bigint => (BigInt(b.readUInt32LE(i * 8 + 12)) << 32n) | BigInt(b.readUInt32LE(i * 8 + 4));
const isPoison = (b: Buffer, i: number): boolean =>
  code(b, i) === OP.CALL && b[i * 8 + 1] === 0 && off16(b, i) === 0 && imm32(b, i) === CORE_POISON_IMM;

// ---- hand-built BTF ----

class B {
  readonly btf: Btf;
  constructor(base?: Btf) {
    this.btf = Btf.empty(base ? { base } : {});
  }
  int(name: string, size: number, signed = false, bitsOffset = 0): number {
    return this.btf.addType({ kind: 'int', name, size, signed, char: false, bool: false, bitsOffset, bits: size * 8 });
  }
  ptr(type: number): number {
    return this.btf.addType({ kind: 'ptr', name: '', type });
  }
  typedef(name: string, type: number): number {
    return this.btf.addType({ kind: 'typedef', name, type });
  }
  cnst(type: number): number {
    return this.btf.addType({ kind: 'const', name: '', type });
  }
  array(type: number, nelems: number, indexType = 0): number {
    return this.btf.addType({ kind: 'array', name: '', type, indexType, nelems });
  }
  /** members: [name, type, bitOffset, bitfieldSize?] */
  struct(name: string, size: number, members: [string, number, number, number?][], kind: 'struct' | 'union' = 'struct'): number {
    return this.btf.addType({
      kind,
      name,
      size,
      members: members.map(([n, type, bitOffset, bitfieldSize]) => ({ name: n, type, bitOffset, bitfieldSize: bitfieldSize ?? 0 })),
    });
  }
  enum(name: string, values: [string, number][], size = 4, signed = false): number {
    return this.btf.addType({ kind: 'enum', name, size, signed, values: values.map(([n, value]) => ({ name: n, value })) });
  }
  enum64(name: string, values: [string, bigint][], signed = false): number {
    return this.btf.addType({ kind: 'enum64', name, size: 8, signed, values: values.map(([n, value]) => ({ name: n, value })) });
  }
  fwd(name: string, fwdKind: 'struct' | 'union' = 'struct'): number {
    return this.btf.addType({ kind: 'fwd', name, fwdKind });
  }
  proto(ret: number, params: number[]): number {
    return this.btf.addType({ kind: 'func_proto', name: '', returnType: ret, params: params.map((type, i) => ({ name: `p${i}`, type })) });
  }
  float(name: string, size: number): number {
    return this.btf.addType({ kind: 'float', name, size });
  }
}

const relo = (insnOff: number, typeId: number, accessor: string, kind: number): CoreRelo => ({ insnOff, typeId, accessor, kind });

/** Applies one relocation to a fresh copy of `insns`; returns the patched copy and the result. */
function one(insns: Buffer, r: CoreRelo, local: Btf, targets: Btf[]): { out: Buffer; res: CoreResult } {
  const out = Buffer.from(insns);
  const [res] = applyCoreRelocations(out, [r], local, targets);
  return { out, res: res! };
}

t.test('essential names drop the last ___flavor suffix', async (t) => {
  const cases: [string, string][] = [
    ['task_struct', 'task_struct'],
    ['task_struct___v1', 'task_struct'],
    ['task_struct___2', 'task_struct'],
    ['a___b___c', 'a___b'],
    ['x___y', 'x'],
    ['___x', '___x'], // nothing before the separator
    ['foo___', 'foo___'], // nothing after it
    ['a____b', 'a____b'], // four underscores: not a separator
    ['a____b___c', 'a____b'],
    ['nf_conn___init', 'nf_conn'],
    ['', ''],
  ];
  for (const [name, want] of cases) t.equal(essentialName(name), want, JSON.stringify(name));
  t.equal(CORE_POISON_IMM, 195896080, 'libbpf\'s poison: invalid func unknown#195896080');
  t.equal(CORE_RELO_KIND_NAMES[K.FIELD_BYTE_OFFSET], 'field_byte_offset');
  t.equal(CORE_RELO_KIND_NAMES[K.TYPE_MATCHES], 'type_matches');
});

/** A local struct with two ints and a target flavor with the fields elsewhere. */
function simplePair() {
  const L = new B();
  const lint = L.int('int', 4, true);
  const ls = L.struct('pair___local', 8, [['a', lint, 0], ['b', lint, 32]]);
  const T = new B();
  const tint = T.int('int', 4, true);
  const tlong = T.int('long', 8, true);
  const ts = T.struct('pair', 24, [['pad', tlong, 0], ['b', tint, 64], ['a', tint, 96]]);
  return { L, T, lint, ls, tint, ts };
}

t.test('field byte offset: ALU immediate, LDX/ST/STX offset and ld_imm64 are patched', async (t) => {
  const { L, T, ls } = simplePair();
  const insns = prog(insn(OP.MOV64_IMM, 1, 0, 0, 4), insn(OP.LDXW, 0, 1, 4), insn(OP.STW, 1, 0, 4, 7), insn(OP.STXW, 1, 2, 4), lddw(3, 4n));
  const relos = [0, 1, 2, 3, 4].map((i) => relo(i, ls, '0:1', K.FIELD_BYTE_OFFSET));
  const out = Buffer.from(insns);
  const res = applyCoreRelocations(out, relos, L.btf, [T.btf]);
  t.same(res.map((r) => [r.ok, r.poisoned, r.fatal, r.localValue, r.targetValue]), Array(5).fill([true, false, false, 4, 8]));
  t.equal(imm32(out, 0), 8, 'mov imm');
  t.equal(off16(out, 1), 8, 'ldx off');
  t.equal(off16(out, 2), 8, 'st off');
  t.equal(imm32(out, 2), 7, 'st imm untouched');
  t.equal(off16(out, 3), 8, 'stx off');
  t.equal(imm64(out, 4), 8n, 'ld_imm64');
  t.equal(res[0]!.description, 'struct pair___local.b');
  t.equal(res[0]!.kindName, 'field_byte_offset');
  t.same(res[0]!.target, { btfIndex: 0, typeId: 3 });
  t.equal(code(out, 1), OP.LDXW, 'same access size');
  // Everything else untouched.
  t.same(out.subarray(7 * 8), insns.subarray(7 * 8));
});

t.test('the instruction must hold the local value (libbpf refuses the object otherwise)', async (t) => {
  const { L, T, ls } = simplePair();
  const cases: [string, Buffer, RegExp][] = [
    ['ALU', prog(insn(OP.MOV64_IMM, 1, 0, 0, 5)), /\(ALU\) holds 5, expected the local value 4 \(to become 8\)/],
    ['LDX', prog(insn(OP.LDXW, 0, 1, 8)), /\(LDX\/ST\/STX\) has offset 8, expected the local value 4/],
    ['LD_IMM64', prog(lddw(1, 0x100000004n)), /\(LD_IMM64\) holds 4294967300, expected the local value 4/],
  ];
  for (const [what, insns, re] of cases) {
    const { out, res } = one(insns, relo(0, ls, '0:1', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
    t.equal(res.fatal, true, `${what}: fatal`);
    t.equal(res.ok, false);
    t.match(res.reason, re, what);
    t.ok(isPoison(out, 0), `${what}: poisoned so it can never run unrelocated`);
  }
  // A negative immediate is compared sign-extended, as libbpf compares s32 with u64.
  const E = new B();
  const e = E.enum('neg', [['MINUS', -2]], 4, true);
  const TE = new B();
  TE.enum('neg', [['MINUS', -3]], 4, true);
  const r1 = one(prog(insn(OP.MOV64_IMM, 1, 0, 0, -2)), relo(0, e, '0', K.ENUMVAL_VALUE), E.btf, [TE.btf]);
  t.equal(r1.res.ok, true);
  t.equal(imm32(r1.out, 0), -3);
  t.equal(r1.res.localValue, 2n ** 64n - 2n, 'local value as libbpf\'s u64');
  // TYPE_ID_TARGET and TYPE_ID_LOCAL are never checked (ids change when objects are linked).
  const tid = one(prog(insn(OP.MOV64_IMM, 1, 0, 0, 999)), relo(0, ls, '0', K.TYPE_ID_TARGET), L.btf, [T.btf]);
  t.equal(tid.res.ok, true);
  t.equal(imm32(tid.out, 0), 3);
  const lid = one(prog(insn(OP.MOV64_IMM, 1, 0, 0, 999)), relo(0, ls, '0', K.TYPE_ID_LOCAL), L.btf, []);
  t.equal(imm32(lid.out, 0), ls, 'local id, no target needed');
});

t.test('instruction forms libbpf cannot patch are errors', async (t) => {
  const { L, T, ls } = simplePair();
  const r = relo(0, ls, '0:1', K.FIELD_BYTE_OFFSET);
  const cases: [string, Buffer, RegExp][] = [
    ['ALU with a register source', prog(insn(OP.ADD64_REG, 1, 2)), /register source/],
    ['jump', prog(insn(OP.JA, 0, 0, 4)), /cannot be relocated/],
    ['LD that is not ld_imm64', prog(insn(OP.LDABSW, 0, 0, 0, 4)), /not a plain 64-bit immediate load/],
    ['ld_imm64 with a src_reg', prog(Buffer.concat([insn(OP.LDDW, 1, 1, 0, 4), insn(0)])), /not a plain 64-bit immediate load/],
    ['ld_imm64 cut short', insn(OP.LDDW, 1, 0, 0, 4), /not a plain 64-bit immediate load/],
  ];
  for (const [what, insns, re] of cases) {
    const { res } = one(insns, r, L.btf, [T.btf]);
    t.equal(res.fatal, true, what);
    t.match(res.reason, re, what);
  }
  const far = one(prog(insn(OP.MOV64_IMM)), relo(5, ls, '0:1', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(far.res.fatal, true);
  t.equal(far.res.poisoned, false, 'nothing to poison outside the program');
  t.match(far.res.reason, /outside the program/);
  // An offset beyond 16 bits.
  const TB = new B();
  const tint = TB.int('int', 4, true);
  TB.struct('pair', 40000, [['a', tint, 8 * 39000], ['b', tint, 8 * 39996]]);
  const big = one(prog(insn(OP.LDXW, 0, 1, 4)), r, L.btf, [TB.btf]);
  t.equal(big.res.fatal, true);
  t.match(big.res.reason, /offset 39996 does not fit in 16 bits/);
  const bigAlu = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 4)), r, L.btf, [TB.btf]);
  t.equal(bigAlu.res.ok, true, 'an ALU immediate has room');
  t.equal(imm32(bigAlu.out, 0), 39996);
});

t.test('poisoning: a call to helper 0xbad2310, both halves of an ld_imm64', async (t) => {
  const L = new B();
  const lint = L.int('int', 4, true);
  const ls = L.struct('gone', 4, [['x', lint, 0]]);
  const T = new B();
  T.int('int', 4, true);
  T.struct('gone', 4, [['y', T.int('int', 4, true), 0]]);
  const insns = prog(insn(OP.MOV64_IMM, 2, 0, 0, 0), insn(OP.LDXW, 3, 1, 0), lddw(4, 0n), insn(OP.MOV64_IMM, 5, 0, 0, 1));
  const out = Buffer.from(insns);
  const res = applyCoreRelocations(
    out,
    [relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), relo(1, ls, '0:0', K.FIELD_BYTE_OFFSET), relo(2, ls, '0:0', K.FIELD_BYTE_SIZE), relo(4, ls, '0:0', K.FIELD_EXISTS)],
    L.btf,
    [T.btf],
  );
  for (const i of [0, 1, 2, 3]) t.ok(isPoison(out, i), `instruction ${i} poisoned`);
  t.same(res.map((r) => [r.ok, r.poisoned, r.fatal]), [[false, true, false], [false, true, false], [false, true, false], [true, false, false]]);
  t.equal(res[0]!.reason, 'struct gone has no member x in the target');
  t.equal(res[0]!.description, 'struct gone.x');
  t.equal(imm32(out, 4), 0, 'field_exists answers 0');
  t.equal(res[3]!.targetValue, 0);
  t.equal(res[3]!.reason, 'struct gone has no member x in the target', 'and says why');
  // No candidate at all.
  const none = one(prog(insn(OP.LDXW, 3, 1, 0)), relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [new B().btf]);
  t.equal(none.res.poisoned, true);
  t.equal(none.res.reason, 'no struct named gone in the target');
});

t.test('load/store size follows a field that changed size, when that is safe', async (t) => {
  const L = new B();
  const u16 = L.int('u16', 2);
  const s16 = L.int('s16', 2, true);
  const u32l = L.int('u32', 4);
  const ls = L.struct('sz', 16, [['u', u16, 0], ['s', s16, 16], ['w', u32l, 32], ['p', L.ptr(0), 64]]);
  const T = new B();
  const u32 = T.int('u32', 4);
  const s32 = T.int('s32', 4, true);
  const u64 = T.int('u64', 8);
  const u24 = T.int('u24', 3);
  T.struct('sz', 32, [['u', u32, 0], ['s', s32, 32], ['w', u24, 64], ['p', T.ptr(0), 128]]);

  const up = one(prog(insn(OP.LDXH, 0, 1, 0)), relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(up.res.ok, true);
  t.equal(code(up.out, 0), OP.LDXW, 'u16 -> u32: the 2-byte load becomes a 4-byte load');
  const st = one(prog(insn(OP.STH, 1, 0, 0, 9)), relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(code(st.out, 0), OP.STW, 'and so does a store');
  const stx = one(prog(insn(OP.STXH, 1, 2, 0)), relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(code(stx.out, 0), OP.STXW);
  const alu = one(prog(insn(OP.MOV64_IMM, 1, 0, 0, 0)), relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(code(alu.out, 0), OP.MOV64_IMM, 'ALU instructions have no size to change');

  const signed = one(prog(insn(OP.LDXH, 0, 1, 2)), relo(0, ls, '0:1', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(signed.res.poisoned, true, 'signed: a wider load would change the value: poisoned');
  t.equal(signed.res.fatal, false, 'but not fatal (dead code may hold it)');
  t.match(signed.res.reason, /size changed \(2 → 4 bytes\)/);
  t.ok(isPoison(signed.out, 0));
  const signedAlu = one(prog(insn(OP.MOV64_IMM, 1, 0, 0, 2)), relo(0, ls, '0:1', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(signedAlu.res.ok, true, 'the offset itself is fine in an ALU immediate');
  t.equal(imm32(signedAlu.out, 0), 4);

  const wrongSize = one(prog(insn(OP.LDXB, 0, 1, 0)), relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(wrongSize.res.fatal, true, 'the instruction must access the local field size');
  t.match(wrongSize.res.reason, /accesses 1 bytes, expected the local field size 2/);
  const odd = one(prog(insn(OP.LDXW, 0, 1, 4)), relo(0, ls, '0:2', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(odd.res.fatal, true);
  t.match(odd.res.reason, /target field size 3 cannot be loaded/);
  const ptr = one(prog(insn(OP.LDXDW, 0, 1, 8)), relo(0, ls, '0:3', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(ptr.res.ok, true);
  t.equal(off16(ptr.out, 0), 16);
  t.equal(code(ptr.out, 0), OP.LDXDW);
  void u64;
});

t.test('flavors, ambiguity and the same answer from several candidates', async (t) => {
  const L = new B();
  const lint = L.int('int', 4, true);
  const ls = L.struct('amb', 8, [['x', lint, 0], ['y', lint, 32]]);
  const T = new B();
  const tint = T.int('int', 4, true);
  const tlong = T.int('long', 8, true);
  T.struct('amb___a', 8, [['y', tint, 0], ['x', tint, 32]]);
  T.struct('amb___b', 16, [['y', tint, 0], ['pad', tlong, 32], ['x', tint, 96]]);
  T.struct('amb___c___d', 4, [['y', tint, 0]]); // essential name amb___c: not a candidate
  T.struct('ambx', 4, [['y', tint, 0]]);

  const y = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 4)), relo(0, ls, '0:1', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(y.res.ok, true, 'two flavors, same offset: fine');
  t.equal(imm32(y.out, 0), 0);
  const x = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, ls, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(x.res.fatal, true, 'different offsets: ambiguous');
  t.match(x.res.reason, /^ambiguous: struct amb___a \[\d+\] and struct amb___b \[\d+\] both match but put the field at different bit offsets \(32 vs 96\)/);
  t.ok(isPoison(x.out, 0));
  // Same offset, different answers.
  const T2 = new B();
  const i4 = T2.int('int', 4, true);
  const i8 = T2.int('long', 8, true);
  T2.struct('amb___a', 8, [['x', i4, 0]]);
  T2.struct('amb___b', 8, [['x', i8, 0]]);
  const sz = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 4)), relo(0, ls, '0:0', K.FIELD_BYTE_SIZE), L.btf, [T2.btf]);
  t.equal(sz.res.fatal, true);
  t.match(sz.res.reason, /^ambiguous: struct amb___a \[\d+\] gives 4 but struct amb___b \[\d+\] gives 8/);
  const ex = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, ls, '0:0', K.FIELD_EXISTS), L.btf, [T2.btf]);
  t.equal(ex.res.ok, true, 'both say the field exists');
  // Local flavors relocate to the plain name and to other flavors.
  const L2 = new B();
  const li = L2.int('int', 4, true);
  const lf = L2.struct('amb___mine___v2', 4, [['y', li, 0]]); // essential name amb___mine
  const nf = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, lf, '0:0', K.FIELD_EXISTS), L2.btf, [T.btf]);
  t.equal(imm32(nf.out, 0), 0, 'amb___mine___v2 looks for amb___mine, not amb');
  t.equal(nf.res.reason, 'no struct named amb___mine in the target');
});

t.test('candidates narrow as relocations go, like libbpf\'s per-object candidate cache', async (t) => {
  const L = new B();
  const lint = L.int('int', 4, true);
  const ls = L.struct('prune', 8, [['x', lint, 0], ['y', lint, 32]]);
  const T = new B();
  const tint = T.int('int', 4, true);
  T.struct('prune___a', 8, [['pad', tint, 0], ['x', tint, 32]]);
  T.struct('prune___b', 8, [['y', tint, 0]]);
  const insns = prog(insn(OP.MOV64_IMM, 0, 0, 0, 1), insn(OP.MOV64_IMM, 0, 0, 0, 0), insn(OP.MOV64_IMM, 0, 0, 0, 1));
  const ry = relo(0, ls, '0:1', K.FIELD_EXISTS);
  const rx = relo(1, ls, '0:0', K.FIELD_BYTE_OFFSET);
  const ry2 = relo(2, ls, '0:1', K.FIELD_EXISTS);

  const alone = one(insns, ry, L.btf, [T.btf]);
  t.equal(imm32(alone.out, 0), 1, 'y exists in prune___b');
  const out = Buffer.from(insns);
  const res = applyCoreRelocations(out, [rx, ry2], L.btf, [T.btf]);
  t.equal(imm32(out, 1), 4, 'x found in prune___a only');
  t.equal(imm32(out, 2), 0, 'after that, prune___b is no longer a candidate: y does not exist');
  t.equal(res[1]!.reason, 'struct prune___a has no member y in the target');

  // Across calls only with a shared cache (what libbpf does for all programs of one object).
  const cache = new CoreCandidateCache();
  const a = Buffer.from(insns);
  applyCoreRelocations(a, [rx], L.btf, [T.btf], { cache });
  applyCoreRelocations(a, [ry], L.btf, [T.btf], { cache });
  t.equal(imm32(a, 0), 0, 'shared cache: pruned by the earlier call');
  const b = Buffer.from(insns);
  applyCoreRelocations(b, [rx], L.btf, [T.btf]);
  applyCoreRelocations(b, [ry], L.btf, [T.btf]);
  t.equal(imm32(b, 0), 1, 'no cache: each call starts afresh');
  // A target that gains types after it was indexed is indexed again.
  const T3 = new B();
  const i3 = T3.int('int', 4, true);
  const before = one(insns, ry, L.btf, [T3.btf]);
  t.equal(imm32(before.out, 0), 0, 'no candidate yet');
  T3.struct('prune___late', 4, [['y', i3, 0]]);
  const after = one(insns, ry, L.btf, [T3.btf]);
  t.equal(imm32(after.out, 0), 1, 'a flavor added later is found');
  const c = Buffer.from(insns);
  applyCoreRelocations(c, [ry], L.btf, [new B().btf, T.btf], { cache });
  t.equal(imm32(c, 0), 1, 'a cache used with other targets starts afresh (vmlinux has nothing here, the module is searched)');
});

t.test('modules are searched only when vmlinux has no candidate; ids are the module\'s', async (t) => {
  const V = new B();
  const vint = V.int('int', 4, true);
  V.struct('in_both', 4, [['other', vint, 0]]);
  const M = new B(V.btf);
  const mint = M.int('int', 4, true);
  const modOnly = M.struct('mod_only', 8, [['pad', mint, 0], ['x', mint, 32]]);
  M.struct('in_both', 4, [['x', mint, 0]]);
  const M2 = new B(V.btf);
  const m2only = M2.struct('mod_only', 12, [['pad', M2.int('long', 8), 0], ['x', M2.int('int', 4, true), 64]]);

  const L = new B();
  const lint = L.int('int', 4, true);
  const lm = L.struct('mod_only', 4, [['x', lint, 0]]);
  const lb = L.struct('in_both', 4, [['x', lint, 0]]);
  const off = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, lm, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [V.btf, M.btf]);
  t.equal(imm32(off.out, 0), 4, 'found in the module');
  t.same(off.res.target, { btfIndex: 1, typeId: modOnly });
  const id = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, lm, '0', K.TYPE_ID_TARGET), L.btf, [V.btf, M.btf]);
  t.equal(imm32(id.out, 0), modOnly, 'TYPE_ID_TARGET: the id in the module\'s (split) id space');
  t.ok(modOnly >= V.btf.length);
  const two = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, lm, '0:0', K.FIELD_BYTE_OFFSET), L.btf, [V.btf, M.btf, M2.btf]);
  t.equal(two.res.fatal, true, 'candidates from two modules disagree: ambiguous');
  void m2only;
  const shadowed = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, lb, '0:0', K.FIELD_EXISTS), L.btf, [V.btf, M.btf]);
  t.equal(imm32(shadowed.out, 0), 0, 'vmlinux has in_both (without x): the module\'s in_both is never looked at');
});

t.test('field matching: anonymous members, arrays, flexible arrays, compatible types', async (t) => {
  const L = new B();
  const lint = L.int('int', 4, true);
  const lchar = L.int('char', 1, true);
  const larr5 = L.array(lint, 5);
  const lflex = L.array(lint, 0);
  const lenum = L.enum('color___l', [['RED', 0]]);
  const lanonEnum = L.enum('', [['X', 0]]);
  const lp = L.ptr(lchar);
  const ls = L.struct('m', 64, [
    ['inner', lint, 0],
    ['arr', larr5, 32],
    ['en', lenum, 192],
    ['anon_en', lanonEnum, 224],
    ['p', lp, 256],
    ['n', L.cnst(lint), 320],
    ['len', lint, 352],
    ['flex', lflex, 384],
  ]);
  const T = new B();
  const tint = T.int('int', 4, true);
  const tu64 = T.int('u64', 8);
  const tarr8 = T.array(tu64, 8);
  const tflex = T.array(tint, 0);
  const tenum = T.enum('color', [['RED', 3]], 4);
  const tother = T.enum('shape', [['RED', 3]], 4);
  const tdef = T.typedef('myint', tint);
  const tanon = T.struct('', 8, [['pad', tint, 0], ['inner', tdef, 32]]);
  const tunion = T.struct('', 8, [['x', tint, 0], ['', tanon, 0]], 'union');
  T.struct('m', 200, [
    ['head', tu64, 0],
    ['', tunion, 64],
    ['arr', tarr8, 128],
    ['en', tenum, 640],
    ['anon_en', tother, 672],
    ['p', T.ptr(tu64), 704],
    ['n', tu64, 768],
    ['len', tint, 832],
    ['flex', tflex, 864],
  ]);
  const cases: [string, string, number, number][] = [
    ['inner through an anonymous union and struct, typedef skipped', '0:0', 0, 12],
    ['arr[4]: the element in the target (u64 elements)', '0:1:4', 20, 16 + 32],
    ['en: enum of the same essential name', '0:2', 24, 80],
    ['anon_en: an anonymous enum matches any enum', '0:3', 28, 84],
    ['p: pointers always match', '0:4', 32, 88],
    ['n: const skipped, any int size', '0:5', 40, 96],
    ['flex[7]: a flexible array takes any index', '0:7:7', 48 + 28, 108 + 28],
  ];
  for (const [what, acc, local, target] of cases) {
    const { res, out } = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, local)), relo(0, ls, acc, K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
    t.equal(res.ok, true, `${what}: ${res.reason ?? ''}`);
    t.equal(imm32(out, 0), target, what);
  }
  const size = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 20)), relo(0, ls, '0:1', K.FIELD_BYTE_SIZE), L.btf, [T.btf]);
  t.equal(imm32(size.out, 0), 64, 'byte size of a whole array member');
  const elemSize = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 4)), relo(0, ls, '0:1:2', K.FIELD_BYTE_SIZE), L.btf, [T.btf]);
  t.equal(imm32(elemSize.out, 0), 8, 'byte size of an element');
  const signedArr = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, ls, '0:1:2', K.FIELD_SIGNED), L.btf, [T.btf]);
  t.equal(signedArr.res.fatal, true, 'only offset and size apply to array elements');
  t.match(signedArr.res.reason, /cannot be applied to an array element/);
  t.equal(signedArr.res.description, 'struct m.arr[2]');

  // Mismatches.
  const T2 = new B();
  const i2 = T2.int('int', 4, true);
  const e2 = T2.enum('shape', [['A', 1]]);
  const s2 = T2.struct('other', 4, [['z', i2, 0]]);
  T2.struct('m', 64, [
    ['inner', s2, 0],
    ['arr', T2.array(i2, 2), 32],
    ['en', e2, 96],
    ['p', i2, 128],
    ['flex', T2.array(i2, 0), 160],
    ['len', i2, 192],
    ['n', T2.int('bitsy', 4, false, 3), 224],
  ]);
  const misses: [string, string, number, RegExp][] = [
    ['int vs struct', '0:0', 0, /struct m\.inner has type struct other in the target, incompatible with local int/],
    ['index beyond a fixed array', '0:1:4', 20, /index 4 is out of bounds of struct m\.arr \(2 elements\) in the target/],
    ['enums of other names', '0:2', 24, /struct m\.en has type enum shape/],
    ['pointer vs int', '0:4', 32, /incompatible/],
    ['a zero-length array that is not the last member is no flexible array', '0:7:7', 76, /index 7 is out of bounds/],
    ['ints with a bit offset (old-style bitfields)', '0:5', 40, /incompatible/],
  ];
  for (const [what, acc, local, re] of misses) {
    const { res } = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, local)), relo(0, ls, acc, K.FIELD_BYTE_OFFSET), L.btf, [T2.btf]);
    t.equal(res.poisoned, true, what);
    t.equal(res.fatal, false, what);
    t.match(res.reason, re, what);
  }
});

t.test('the root index and nested arrays count in the offset', async (t) => {
  const L = new B();
  const lint = L.int('int', 4, true);
  const row = L.array(lint, 3);
  const ls = L.struct('grid', 32, [['a', lint, 0], ['m', L.array(row, 2), 32]]);
  const T = new B();
  const tint = T.int('int', 4, true);
  const trow = T.array(tint, 4);
  T.struct('grid', 64, [['pad', T.int('long', 8), 0], ['a', tint, 64], ['m', T.array(trow, 3), 96]]);
  // (&s[1])->m[1][2]: 32 + 4 + 12 + 8 locally, 64 + 12 + 16 + 8 in the target
  const { res, out } = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 56)), relo(0, ls, '1:1:1:2', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(res.ok, true, res.reason ?? '');
  t.equal(imm32(out, 0), 100);
  t.equal(res.description, 'struct grid[1].m[1][2]');
  const ldx = one(prog(insn(OP.LDXW, 0, 1, 56)), relo(0, ls, '1:1:1:2', K.FIELD_BYTE_OFFSET), L.btf, [T.btf]);
  t.equal(off16(ldx.out, 0), 100, 'LDX of an element');
});

t.test('bitfields: offset, size and shifts computed like libbpf, never checked against the instruction', async (t) => {
  const L = new B();
  const lu = L.int('unsigned int', 4);
  const ls = L.struct('bits', 8, [['a', lu, 0, 3], ['s', L.int('int', 4, true), 3, 5]]);
  const T = new B();
  const tu32 = T.int('unsigned int', 4);
  const ts32 = T.int('int', 4, true);
  const tu64 = T.int('unsigned long long', 8);
  const tu8 = T.int('unsigned char', 1);
  T.struct('bits', 24, [
    ['pad', tu64, 0],
    ['a', tu32, 64 + 27, 3],
    ['s', ts32, 64 + 30, 5], // straddles 32 bits: needs an 8-byte load
    ['wide', tu64, 128 + 60, 10], // straddles 64 bits: no single load
    ['c', tu8, 128 + 6, 4], // straddles a byte: a 2-byte load
  ]);
  const want = (acc: string, kind: number, v: number): void => {
    const { res, out } = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 12345)), relo(0, ls, acc, kind), L.btf, [T.btf]);
    t.equal(res.ok, true, `${acc} ${CORE_RELO_KIND_NAMES[kind]}: ${res.reason ?? ''}`);
    t.equal(imm32(out, 0), v, `${acc} ${CORE_RELO_KIND_NAMES[kind]} = ${v}`);
  };
  // a: bits 91..93 of an unsigned int: 4-byte load at 8, value bits 27..29 of it.
  want('0:0', K.FIELD_BYTE_OFFSET, 8);
  want('0:0', K.FIELD_BYTE_SIZE, 4);
  want('0:0', K.FIELD_LSHIFT_U64, 64 - (91 + 3 - 64));
  // s: bits 94..98 cross the 32-bit unit: an 8-byte load at 8.
  want('0:1', K.FIELD_BYTE_OFFSET, 8);
  want('0:1', K.FIELD_BYTE_SIZE, 8);
  want('0:1', K.FIELD_LSHIFT_U64, 64 - (94 + 5 - 64));
  const sign = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, ls, '0:1', K.FIELD_SIGNED), L.btf, [T.btf]);
  t.equal(imm32(sign.out, 0), 1);
  const rs = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 59)), relo(0, ls, '0:1', K.FIELD_RSHIFT_U64), L.btf, [T.btf]);
  t.equal(imm32(rs.out, 0), 59, 'right shift: 64 - bits');
  const rsBad = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 60)), relo(0, ls, '0:1', K.FIELD_RSHIFT_U64), L.btf, [T.btf]);
  t.equal(rsBad.res.fatal, true, 'the right shift is checked (it is never ambiguous)');

  const L2 = new B();
  const l64 = L2.int('unsigned long long', 8);
  const l8 = L2.int('unsigned char', 1);
  const ls2 = L2.struct('bits', 16, [['wide', l64, 0, 10], ['c', l8, 16, 4]]);
  const wide = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, ls2, '0:0', K.FIELD_BYTE_OFFSET), L2.btf, [T.btf]);
  t.equal(wide.res.fatal, true);
  t.match(wide.res.reason, /bitfield wide cannot be read with one 64-bit load/);
  const c = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, ls2, '0:1', K.FIELD_BYTE_SIZE), L2.btf, [T.btf]);
  t.equal(imm32(c.out, 0), 2, 'a 4-bit field across a byte boundary: 2-byte load');
  const cOff = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, ls2, '0:1', K.FIELD_BYTE_OFFSET), L2.btf, [T.btf]);
  t.equal(imm32(cOff.out, 0), 16);
  const cL = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, ls2, '0:1', K.FIELD_LSHIFT_U64), L2.btf, [T.btf]);
  t.equal(imm32(cL.out, 0), 64 - (134 + 4 - 128));
  // Plain fields relocate through the bitfield kinds too.
  const L3 = new B();
  const ls3 = L3.struct('bits', 8, [['pad', L3.int('unsigned int', 4), 0]]);
  const T3 = new B();
  T3.struct('bits', 8, [['x', T3.int('int', 4, true), 0], ['pad', T3.int('unsigned short', 2), 32]]);
  for (const [kind, v] of [[K.FIELD_LSHIFT_U64, 48], [K.FIELD_RSHIFT_U64, 48], [K.FIELD_BYTE_SIZE, 2], [K.FIELD_SIGNED, 0]] as const) {
    const r = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, kind === K.FIELD_RSHIFT_U64 ? 32 : kind === K.FIELD_BYTE_SIZE ? 4 : kind === K.FIELD_LSHIFT_U64 ? 32 : 0)), relo(0, ls3, '0:0', kind), L3.btf, [T3.btf]);
    t.equal(imm32(r.out, 0), v, `non-bitfield ${CORE_RELO_KIND_NAMES[kind]}`);
  }
});

t.test('enum values: 32-bit values widen with their sign (libbpf reads an s32), enum64 as 64 bits', async (t) => {
  const L = new B();
  const le = L.enum('e___l', [['A___l', 0], ['B___l', 1], ['C___l', 2], ['GONE', 3]]);
  const le64 = L.enum64('e64', [['BIG', 0x100000000n]]);
  const T = new B();
  T.enum('e', [['A', 0x80000000], ['B', 5], ['C___other', 6]]); // unsigned 32-bit enum
  T.enum64('e64', [['BIG', 0xfffffffffffffff0n]]);
  const a = one(prog(lddw(0, 0n)), relo(0, le, '0', K.ENUMVAL_VALUE), L.btf, [T.btf]);
  t.equal(imm64(a.out, 0), 0xffffffff80000000n, 'A: 0x80000000 sign-extended');
  const aMov = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, le, '0', K.ENUMVAL_VALUE), L.btf, [T.btf]);
  t.equal(imm32(aMov.out, 0), -0x80000000, 'in a 32-bit immediate: the low 32 bits');
  const c = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 2)), relo(0, le, '2', K.ENUMVAL_VALUE), L.btf, [T.btf]);
  t.equal(imm32(c.out, 0), 6, 'enumerators match by essential name too');
  t.equal(c.res.description, 'enum e___l::C___l');
  const gone = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 3)), relo(0, le, '3', K.ENUMVAL_VALUE), L.btf, [T.btf]);
  t.equal(gone.res.poisoned, true);
  t.equal(gone.res.reason, 'enum e has no value GONE in the target');
  const goneEx = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, le, '3', K.ENUMVAL_EXISTS), L.btf, [T.btf]);
  t.equal(goneEx.res.ok, true);
  t.equal(imm32(goneEx.out, 0), 0);
  const big = one(prog(lddw(0, 0x100000000n)), relo(0, le64, '0', K.ENUMVAL_VALUE), L.btf, [T.btf]);
  t.equal(imm64(big.out, 0), 0xfffffffffffffff0n, 'enum64: all 64 bits');
  t.equal(big.res.targetValue, 0xfffffffffffffff0n);
  // The local side follows the same rule: an unsigned 0x80000000 is expected sign-extended.
  const L2 = new B();
  const hi = L2.enum('e', [['A', 0x80000000]]);
  const quirk = one(prog(lddw(0, 0x80000000n)), relo(0, hi, '0', K.ENUMVAL_VALUE), L2.btf, [T.btf]);
  t.equal(quirk.res.fatal, true, 'as in libbpf: ld_imm64 0x80000000 is not the s32-widened local value');
  const ok = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, -0x80000000)), relo(0, hi, '0', K.ENUMVAL_VALUE), L2.btf, [T.btf]);
  t.equal(ok.res.ok, true, 'a mov of -2^31 is what libbpf expects');
  // enum and enum64 are compatible kinds.
  const cross = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, le64, '0', K.ENUMVAL_EXISTS), L.btf, [T.btf]);
  t.equal(cross.res.ok, true);
});

t.test('type relocations: exists, size, ids, compatibility rules', async (t) => {
  const L = new B();
  const lint = L.int('int', 4, true);
  const ls = L.struct('ty', 4, [['a', lint, 0]]);
  const lu = L.struct('ty', 4, [['a', lint, 0]], 'union');
  const ldef = L.typedef('ty_t___l', ls);
  const lfn = L.typedef('fn_t', L.ptr(L.proto(lint, [lint])));
  const lfwd = L.fwd('opaque');
  const lfl = L.typedef('real_t', L.float('float', 4));
  const lenum = L.enum('en', [['X', 0]], 4);
  const lbitsint = L.typedef('bitsy_t', L.int('bitsy', 4, false, 2));
  const T = new B();
  const tint = T.int('int', 4, true);
  const tlong = T.int('long', 8, true);
  const ts = T.struct('ty', 16, [['b', tlong, 0]]);
  T.typedef('ty_t', ts);
  T.typedef('fn_t', T.ptr(T.proto(tlong, [tint, tint])));
  T.fwd('opaque');
  T.typedef('real_t', T.float('double', 8));
  T.enum64('en', [['Y', 1n]]);
  T.typedef('bitsy_t', T.int('bitsy', 4));
  const ask = (type: number, kind: number, orig: number) =>
    one(prog(insn(OP.MOV64_IMM, 0, 0, 0, orig)), relo(0, type, '0', kind), L.btf, [T.btf]);

  t.equal(imm32(ask(ls, K.TYPE_EXISTS, 1).out, 0), 1, 'struct ty (members are not compared)');
  t.equal(imm32(ask(ls, K.TYPE_SIZE, 4).out, 0), 16, 'size in the target');
  t.equal(imm32(ask(lu, K.TYPE_EXISTS, 1).out, 0), 0, 'union ty: the target has only a struct ty');
  t.equal(imm32(ask(ldef, K.TYPE_SIZE, 4).out, 0), 16, 'typedef ty_t___l -> ty_t -> struct ty');
  t.equal(imm32(ask(lfn, K.TYPE_EXISTS, 1).out, 0), 0, 'function pointers with other arities are not compatible');
  t.equal(imm32(ask(lfwd, K.TYPE_EXISTS, 1).out, 0), 1, 'forward declarations');
  t.equal(imm32(ask(lfl, K.TYPE_EXISTS, 1).out, 0), 0, 'floats are not compatible (libbpf: unexpected kind)');
  t.equal(imm32(ask(lenum, K.TYPE_EXISTS, 1).out, 0), 1, 'enum vs enum64');
  t.equal(imm32(ask(lbitsint, K.TYPE_EXISTS, 1).out, 0), 0, 'ints with a bit offset are not compatible');
  const missing = ask(L.struct('nowhere', 4, []), K.TYPE_SIZE, 4);
  t.equal(missing.res.ok, true, 'a missing type gives 0, not poison');
  t.equal(imm32(missing.out, 0), 0);
  t.equal(missing.res.reason, 'no struct named nowhere in the target');
  const fwdSize = ask(lfwd, K.TYPE_SIZE, 0);
  t.equal(fwdSize.res.fatal, true, 'a forward declaration has no size: libbpf errors out');
  t.equal(ask(ls, K.TYPE_ID_TARGET, 0).res.targetValue, ts);
  t.equal(ask(ls, K.TYPE_EXISTS, 1).res.description, 'struct ty (type exists)');
  t.equal(ask(ls, K.TYPE_SIZE, 4).res.description, 'struct ty (type size)');
  t.equal(ask(ldef, K.TYPE_ID_TARGET, 0).res.description, 'ty_t___l (target type id)');
});

t.test('types match: libbpf\'s stricter relation', async (t) => {
  const L = new B();
  const T = new B();
  const li = L.int('int', 4, true);
  const lu = L.int('unsigned int', 4);
  const ll = L.int('long', 8, true);
  const ti = T.int('int', 4, true);
  const tl = T.int('long', 8, true);
  const tc = T.int('char', 1, true);
  const tNode = T.struct('node', 16, [['next', 0, 0], ['val', ti, 64]]);
  T.btf.setType({ kind: 'struct', id: tNode, name: 'node', size: 16, members: [{ name: 'next', type: T.ptr(tNode), bitOffset: 0, bitfieldSize: 0 }, { name: 'val', type: ti, bitOffset: 64, bitfieldSize: 0 }] });
  const tOpaque = T.fwd('opaque');
  T.struct('m', 64, [
    ['a', ti, 0],
    ['b', tl, 32],
    ['arr', T.array(tc, 8), 96],
    ['n', T.ptr(tNode), 192],
    ['o', T.ptr(tOpaque), 256],
    ['e', T.enum('col', [['RED', 1], ['GREEN', 2], ['BLUE', 3]]), 320],
    ['cb', T.ptr(T.proto(ti, [ti, T.ptr(tNode)])), 384],
    ['u', T.struct('', 4, [['x', ti, 0]], 'union'), 448],
  ]);
  const lc = L.int('char', 1, true);
  const lNodeFwd = L.fwd('node');
  const lOpaqueStruct = L.struct('opaque___l', 4, [['zzz', li, 0]]);
  const member = (n: string, ty: number): [string, number, number] => [n, ty, 0];
  const local = (name: string, members: [string, number, number][]) => L.struct(name, 8, members);
  const cases: [string, number, boolean][] = [
    ['a subset of members, any order', local('m___1', [member('b', ll), member('a', li)]), true],
    ['int signedness', local('m___2', [member('a', lu)]), false],
    ['int size', local('m___3', [member('a', ll)]), false],
    ['array length must be equal', local('m___4', [member('arr', L.array(lc, 4))]), false],
    ['array of the same length', local('m___5', [member('arr', L.array(lc, 8))]), true],
    ['behind a pointer a forward declaration matches a struct', local('m___6', [member('n', L.ptr(lNodeFwd))]), true],
    ['and a struct matches a forward declaration (names only)', local('m___7', [member('o', L.ptr(lOpaqueStruct))]), true],
    ['a member the target lacks', local('m___8', [member('zz', li)]), false],
    ['enum: a subset of names, values ignored', local('m___9', [member('e', L.enum('col', [['BLUE', 9], ['RED', 0]]))]), true],
    ['enum: a name the target lacks', local('m___10', [member('e', L.enum('col', [['PINK', 1]]))]), false],
    ['enum: size must be equal', local('m___11', [member('e', L.enum64('col', [['RED', 1n]]))]), false],
    ['function pointer: same arity, matching types', local('m___12', [member('cb', L.ptr(L.proto(li, [li, L.ptr(lNodeFwd)])))]), true],
    ['function pointer: other arity', local('m___13', [member('cb', L.ptr(L.proto(li, [li])))]), false],
    ['anonymous members match anonymous members', local('m___14', [member('u', L.struct('', 4, [['x', li, 0]], 'union'))]), true],
    ['struct vs union without a pointer', local('m___15', [member('u', L.struct('', 4, [['x', li, 0]]))]), false],
    ['more members than the target', L.struct('m___16', 8, Array.from({ length: 9 }, (_, i) => member(`f${i}`, li))), false],
  ];
  for (const [what, id, want] of cases) {
    const { res, out } = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, id, '0', K.TYPE_MATCHES), L.btf, [T.btf]);
    t.equal(res.ok, true, what);
    t.equal(imm32(out, 0), want ? 1 : 0, `${what}: ${want ? 'match' : 'no match'}`);
  }
  // The same local types are merely "compatible" for TYPE_EXISTS.
  const exists = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 1)), relo(0, cases[1]![1], '0', K.TYPE_EXISTS), L.btf, [T.btf]);
  t.equal(imm32(exists.out, 0), 1);
  void tc;
});

t.test('malformed relocations are errors, as in libbpf', async (t) => {
  const L = new B();
  const lint = L.int('int', 4, true);
  const ls = L.struct('s', 8, [['a', lint, 0], ['b', lint, 32]]);
  const anon = L.struct('', 4, [['a', lint, 0]]);
  const le = L.enum('e', [['A', 1]]);
  const T = new B();
  T.struct('s', 8, [['a', T.int('int', 4, true), 0]]);
  const cases: [string, CoreRelo, RegExp][] = [
    ['empty access string', relo(0, ls, '', K.FIELD_BYTE_OFFSET), /invalid access string "" for struct s: empty/],
    ['leading colon', relo(0, ls, ':1', K.FIELD_BYTE_OFFSET), /empty/],
    ['not a number', relo(0, ls, '0:x', K.FIELD_BYTE_OFFSET), /expected a number/],
    ['trailing colon', relo(0, ls, '0:1:', K.FIELD_BYTE_OFFSET), /expected a number/],
    ['negative index', relo(0, ls, '0:-1', K.FIELD_BYTE_OFFSET), /out of range/],
    ['no such member', relo(0, ls, '0:2', K.FIELD_BYTE_OFFSET), /struct s has no member #2/],
    ['member of an int', relo(0, ls, '0:0:1', K.FIELD_BYTE_OFFSET), /reaches int, which has no members or elements/],
    ['type relocation with an index', relo(0, ls, '1', K.TYPE_SIZE), /type relocations use "0"/],
    ['enumerator out of range', relo(0, le, '1', K.ENUMVAL_VALUE), /not an enumerator/],
    ['enumerator of a struct', relo(0, ls, '0', K.ENUMVAL_VALUE), /not an enumerator/],
    ['unknown kind', relo(0, ls, '0:0', 42), /unknown CO-RE relocation kind 42/],
    ['anonymous type', relo(0, anon, '0:0', K.FIELD_BYTE_OFFSET), /anonymous type is not supported/],
    ['type id out of range', relo(0, 999, '0', K.TYPE_EXISTS), /out of range/],
  ];
  for (const [what, r, re] of cases) {
    const { res, out } = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), r, L.btf, [T.btf]);
    t.equal(res.fatal, true, what);
    t.match(res.reason, re, what);
    t.ok(isPoison(out, 0), `${what}: poisoned`);
  }
  t.equal(one(prog(insn(OP.MOV64_IMM)), relo(0, 42, '0', K.TYPE_EXISTS), L.btf, []).res.kindName, 'type_exists');
  t.equal(one(prog(insn(OP.MOV64_IMM)), relo(0, ls, '0:0', 42), L.btf, []).res.kindName, 'unknown');
  const local = one(prog(insn(OP.MOV64_IMM, 0, 0, 0, 0)), relo(0, anon, '0', K.TYPE_ID_LOCAL), L.btf, []);
  t.equal(local.res.ok, true, 'TYPE_ID_LOCAL of an anonymous type is fine');
  t.equal(imm32(local.out, 0), anon);
});

// ---- the test objects ----

interface Relocated {
  insns: Buffer;
  original: Buffer;
  results: CoreResult[];
}

function relocate(spec: CollectionSpec, name: string, targets: Btf[]): Relocated {
  const l = linkProgram(spec, spec.programs[name]!);
  const original = Buffer.from(l.insns);
  const results = applyCoreRelocations(l.insns, l.coreRelos, spec.btf!, targets, { programName: name });
  return { insns: l.insns, original, results };
}

t.test('core_self.o against core_target.o: every relocation, checked by hand', async (t) => {
  const spec = loadCollectionSpec(obj('core_self.o'));
  const target = loadBtfFile(obj('core_target.o'));
  const rec = target.findType('core_rec', 'struct');
  const byName = new Map<string, Relocated>();
  for (const name of Object.keys(spec.programs)) byName.set(name, relocate(spec, name, [target]));
  const summary = (name: string) => byName.get(name)!.results.map((r) => `${r.kindName} ${r.description} = ${r.ok ? String(r.targetValue) : r.poisoned ? 'poison' : 'error'}`);
  // Spot checks against offsets read from the target BTF ourselves.
  const memberOffset = (path: string[]): number => {
    let ty: BtfType = rec;
    let bits = 0;
    for (const name of path) {
      const find = (t: BtfType, base: number): number | undefined => {
        if (t.kind !== 'struct' && t.kind !== 'union') return undefined;
        for (const m of t.members) {
          if (m.name === name) {
            ty = target.resolve(m.type);
            return base + m.bitOffset;
          }
          if (m.name === '') {
            const inner = find(target.resolve(m.type), base + m.bitOffset);
            if (inner !== undefined) return inner;
          }
        }
        return undefined;
      };
      bits = find(ty, bits)!;
    }
    return bits / 8;
  };
  const fields = summary('self_fields');
  t.ok(fields.includes(`field_byte_offset struct core_rec___v1.hi = ${memberOffset(['hi'])}`), 'hi, inside anonymous members');
  t.ok(fields.includes(`field_byte_offset struct core_rec___v1.inner.b = ${memberOffset(['inner', 'b'])}`));
  t.ok(fields.includes(`field_byte_offset struct core_rec___v1.arr[2] = ${memberOffset(['arr']) + 8}`));
  t.ok(fields.includes(`field_byte_offset struct core_rec___v1.flex[2] = ${memberOffset(['flex']) + 8}`));
  t.ok(fields.includes('field_byte_size struct core_rec___v1.arr = 24'));
  const f = byName.get('self_fields')!;
  const countLoad = f.results.find((r) => r.description === 'struct core_rec___v1.count' && (f.original[r.insn * 8]! & 7) === 1)!;
  t.equal(code(f.original, countLoad.insn), OP.LDXH, 'the compiler loads the local u16 count with a 2-byte load');
  t.equal(code(f.insns, countLoad.insn), OP.LDXW, 'relocated to a 4-byte load of the target u32');
  const countStore = f.results.find((r) => r.description === 'struct core_rec___v1.count' && [2, 3].includes(f.original[r.insn * 8]! & 7))!;
  t.ok([OP.STH, OP.STXH].includes(code(f.original, countStore.insn) as 0x6a), 'a 2-byte store of count');
  t.equal(code(f.insns, countStore.insn), code(f.original, countStore.insn) - OP.STH + OP.STW, 'becomes a 4-byte store');
  t.ok(f.results.every((r) => r.ok), 'self_fields: all relocated');

  const bits = summary('self_bitfields');
  t.ok(bits.includes('field_byte_size struct core_rec___v1.packed.c = 4'), 'packed c straddles its u16: a 4-byte load');
  t.ok(bits.includes('field_byte_size struct core_rec___v1.packed.a = 1'));
  t.ok(bits.includes('field_byte_size struct core_rec___v1.packed.b = 2'));
  t.ok(byName.get('self_bitfields')!.results.every((r) => r.ok));

  const types = summary('self_types_enums');
  t.ok(types.includes('enumval_value enum core_color___v1::CORE_HIGH___v1 = 18446744071562067968'), 'unsigned 0x80000000, widened with its sign');
  t.ok(types.includes('enumval_value enum core_big___v1::CORE_BIG_NEG___v1 = 18446744073709551600'));
  t.ok(types.includes(`type_id_target struct core_rec___v1 (target type id) = ${rec.id}`));
  t.ok(types.includes('type_matches struct core_inner___match (type matches) = 1'));
  t.ok(types.includes('type_matches struct core_inner___nomatch (type matches) = 0'));
  t.ok(types.includes('field_byte_offset struct core_rec___v1.missing = poison'), 'the guarded load of a missing field');

  t.same(summary('self_prune'), ['field_byte_offset struct core_prune.x = 4', 'field_exists struct core_prune.y = 0']);
  const amb = byName.get('self_ambiguous')!.results;
  t.equal(amb[0]!.ok, true, 'y: same offset in both flavors');
  t.equal(amb[1]!.fatal, true, 'x: ambiguous');
  t.match(amb[1]!.reason, /^ambiguous: struct core_amb___a \[\d+\] and struct core_amb___b \[\d+\]/);
  const resize = byName.get('self_signed_resize')!.results[0]!;
  t.equal(resize.poisoned && !resize.fatal, true, 'signed field that changed size: poisoned');
  const sign = byName.get('self_enum_sign')!.results[0]!;
  t.equal(sign.fatal, true, 'libbpf\'s enum sign quirk');
  t.match(sign.reason, /\(LD_IMM64\) holds 2147483648, expected the local value 18446744071562067968/);
});

t.test('core_kernel.o against kernel BTF: values checked against the kernel\'s types', { skip: !hasVmlinux && 'no kernel BTF' }, async (t) => {
  const kernel = loadKernelBtf();
  const spec = loadCollectionSpec(obj('core_kernel.o'));
  const task = kernel.findType('task_struct', 'struct');
  const member = (ty: BtfType, name: string): { bitOffset: number; bitfieldSize: number; type: number } => {
    if (ty.kind !== 'struct' && ty.kind !== 'union') throw new Error('not a struct');
    for (const m of ty.members) {
      if (m.name === name) return m;
      if (m.name === '') {
        try {
          const inner = member(kernel.resolve(m.type), name);
          return { ...inner, bitOffset: inner.bitOffset + m.bitOffset };
        } catch {
          // not in this one
        }
      }
    }
    throw new Error(`no member ${name}`);
  };
  const byDesc = (r: Relocated) => new Map(r.results.map((x) => [`${x.kindName} ${x.description}`, x]));
  const t0 = performance.now();
  const fields = byDesc(relocate(spec, 'fields', [kernel]));
  const firstMs = performance.now() - t0;
  t.equal(fields.get('field_byte_offset struct task_struct___mine.pid')!.targetValue, member(task, 'pid').bitOffset / 8);
  t.equal(fields.get('field_byte_offset struct task_struct___mine.comm')!.targetValue, member(task, 'comm').bitOffset / 8);
  t.equal(fields.get('field_byte_size struct task_struct___mine.comm')!.targetValue, 16);
  t.equal(fields.get('field_signed struct task_struct___mine.pid')!.targetValue, 1);

  const mm = kernel.findType('mm_struct', 'struct');
  const anon = byDesc(relocate(spec, 'anon_array', [kernel]));
  t.equal(anon.get('field_byte_offset struct mm_struct___mine.arg_start')!.targetValue, member(mm, 'arg_start').bitOffset / 8, 'arg_start, in an anonymous struct');
  t.equal(anon.get('field_byte_offset struct mm_struct___mine.saved_auxv[3]')!.targetValue, member(mm, 'saved_auxv').bitOffset / 8 + 24);

  // Bitfields of sock_common, computed here the simple way.
  const sc = kernel.findType('sock_common', 'struct');
  const bits = byDesc(relocate(spec, 'bitfields', [kernel]));
  for (const name of ['skc_reuse', 'skc_ipv6only', 'skc_net_refcnt']) {
    const m = member(sc, name);
    const storage = kernel.sizeof(m.type);
    let size = storage;
    let byteOff = Math.floor(m.bitOffset / 8 / size) * size;
    while (m.bitOffset + m.bitfieldSize - byteOff * 8 > size * 8) {
      size *= 2;
      byteOff = Math.floor(m.bitOffset / 8 / size) * size;
    }
    const d = `struct sock___mine.__sk_common.${name}`;
    t.equal(bits.get(`field_byte_offset ${d}`)!.targetValue, byteOff, `${name} byte offset`);
    t.equal(bits.get(`field_byte_size ${d}`)!.targetValue, size, `${name} load size`);
    t.equal(bits.get(`field_lshift_u64 ${d}`)!.targetValue, 64 - (m.bitOffset + m.bitfieldSize - byteOff * 8), `${name} left shift`);
    t.equal(bits.get(`field_rshift_u64 ${d}`)!.targetValue, 64 - m.bitfieldSize, `${name} right shift`);
  }
  t.equal(bits.get('field_byte_offset struct sock___mine.__sk_common.skc_num')!.targetValue, member(sc, 'skc_num').bitOffset / 8, 'skc_num: anonymous struct in an anonymous union');

  const types = byDesc(relocate(spec, 'types', [kernel]));
  t.equal(types.get('type_size struct task_struct___mine (type size)')!.targetValue, kernel.sizeof(task.id));
  t.equal(types.get('type_id_target struct task_struct___mine (target type id)')!.targetValue, task.id);
  t.equal(types.get('type_matches struct task_struct___match (type matches)')!.targetValue, 1);
  t.equal(types.get('type_size u64___mine (type size)')!.targetValue, 8);

  const enums = byDesc(relocate(spec, 'enums', [kernel]));
  t.equal(enums.get('enumval_value enum bpf_map_type___mine::BPF_MAP_TYPE_RINGBUF___mine')!.targetValue, 27);
  t.equal(enums.get('enumval_value enum perf_callchain_context___mine::PERF_CONTEXT_KERNEL___mine')!.targetValue, 2n ** 64n - 128n, 'a kernel enum64');

  const exists = relocate(spec, 'exists', [kernel]).results;
  const old = exists.filter((r) => r.description === 'struct task_struct___old.state');
  t.same(old.map((r) => [r.kindName, r.ok, r.poisoned, r.fatal]), [
    ['field_exists', true, false, false],
    ['field_byte_offset', false, true, false],
    ['field_exists', true, false, false],
    ['field_byte_offset', false, true, false],
  ]);
  t.equal(old[1]!.reason, 'struct task_struct has no member state in the target');

  // Later relocations are cheap: name lookups and candidate lists are cached.
  const t1 = performance.now();
  for (let i = 0; i < 20; i++) for (const name of Object.keys(spec.programs)) relocate(spec, name, [kernel]);
  const perRound = (performance.now() - t1) / 20;
  t.ok(perRound < 50, `all ${Object.keys(spec.programs).length} programs relocate in ${perRound.toFixed(1)} ms (first program: ${firstMs.toFixed(0)} ms, with the vmlinux indexes)`);
});

// ---- libbpf, for comparison ----

const DUMP_C = String.raw`
// Prints the instructions libbpf would load for one program, after CO-RE relocation.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	return vfprintf(stderr, fmt, args);
}

static int dump(struct bpf_program *prog, struct bpf_prog_load_opts *opts, long cookie)
{
	const unsigned char *b = (const void *)bpf_program__insns(prog);
	size_t n = bpf_program__insn_cnt(prog) * 8;

	printf("insns ");
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
	fflush(stdout);
	return -ECANCELED; /* do not load */
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *p;
	int found = 0, err;

	if (argc < 3)
		return 2;
	libbpf_set_print(print_fn);
	LIBBPF_OPTS(libbpf_prog_handler_opts, hopts, .prog_prepare_load_fn = dump);
	if (libbpf_register_prog_handler("syscall", BPF_PROG_TYPE_SYSCALL, 0, &hopts) < 0)
		return 3;
	LIBBPF_OPTS(bpf_object_open_opts, oopts, .btf_custom_path = argc > 3 ? argv[3] : NULL);
	obj = bpf_object__open_file(argv[1], &oopts);
	if (!obj)
		return 4;
	bpf_object__for_each_program(p, obj) {
		int me = strcmp(bpf_program__name(p), argv[2]) == 0;

		bpf_program__set_autoload(p, me);
		found |= me;
	}
	if (!found)
		return 5;
	err = bpf_object__load(obj);
	printf("load %d\n", err);
	bpf_object__close(obj);
	return 0;
}
`;

let dumpTool: string | undefined | null;
function libbpfDumpTool(): string | undefined {
  if (dumpTool !== undefined) return dumpTool ?? undefined;
  dumpTool = null;
  if (!existsSync('/usr/include/bpf/libbpf.h')) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-core-'));
  writeFileSync(join(dir, 'dump.c'), DUMP_C);
  const r = spawnSync('cc', ['-O1', '-o', join(dir, 'dump'), join(dir, 'dump.c'), '-lbpf'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  dumpTool = join(dir, 'dump');
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dumpTool;
}

function libbpfRelocate(object: string, program: string, targetBtf?: string): { insns?: Buffer; log: string } {
  const r = spawnSync(dumpTool!, [object, program, ...(targetBtf ? [targetBtf] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`libbpf dump tool failed (${r.status}): ${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith('insns '));
  return { insns: line ? Buffer.from(line.slice(6), 'hex') : undefined, log: r.stderr };
}

/** Our relocation of every program of `object` must equal libbpf's, instruction for instruction. */
async function compareWithLibbpf(t: Test, object: string, targets: Btf[], targetPath: string | undefined, fatal: Record<string, RegExp>): Promise<void> {
  const spec = loadCollectionSpec(obj(object));
  for (const name of Object.keys(spec.programs)) {
    const ours = relocate(spec, name, targets);
    const theirs = libbpfRelocate(obj(object), name, targetPath);
    const fatalOurs = ours.results.filter((r) => r.fatal);
    if (fatal[name]) {
      t.equal(theirs.insns, undefined, `${name}: libbpf refuses the object`);
      t.match(theirs.log, fatal[name]!, `${name}: libbpf says why`);
      t.ok(fatalOurs.length > 0, `${name}: ours reports a fatal relocation (${fatalOurs.map((r) => r.reason).join('; ')})`);
      continue;
    }
    t.same(fatalOurs, [], `${name}: no fatal relocation`);
    if (!theirs.insns) {
      t.fail(`${name}: libbpf did not relocate it:\n${theirs.log.split('\n').filter((l) => /relo|error|fail/i.test(l)).join('\n')}`);
      continue;
    }
    t.equal(theirs.insns.length, ours.insns.length, `${name}: same length`);
    const diffs: string[] = [];
    for (const r of ours.results) {
      const n = code(ours.original, r.insn) === OP.LDDW ? 2 : 1;
      const a = ours.insns.subarray(r.insn * 8, (r.insn + n) * 8);
      const b = theirs.insns.subarray(r.insn * 8, (r.insn + n) * 8);
      if (!a.equals(b)) diffs.push(`insn ${r.insn} ${r.kindName} ${r.description}: ours ${a.toString('hex')} libbpf ${b.toString('hex')}`);
    }
    t.same(diffs, [], `${name}: ${ours.results.length} relocated instructions identical to libbpf's (${ours.results.filter((r) => r.poisoned).length} poisoned)`);
    // libbpf's debug log: one "patched insn #N (...) imm|off|imm64" or "substituting insn #N" line per
    // relocation, and a "mem_sz" line per load/store whose size changed.
    const count = (re: string): number => (theirs.log.match(new RegExp(`prog '${name}': relo #\\d+: ${re}`, 'g')) ?? []).length;
    t.equal(count('(patched insn #\\d+ \\([^)]*\\) (imm|off|imm64) |substituting insn)'), ours.results.length, `${name}: libbpf patched as many instructions`);
    const resized = ours.results.filter((r) => code(ours.original, r.insn) !== code(ours.insns, r.insn) && !r.poisoned).length;
    t.equal(count('patched insn #\\d+ \\(LDX/ST/STX\\) mem_sz'), resized, `${name}: and resized as many loads/stores (${resized})`);
  }
}

const noLibbpf = !noRoot && !libbpfDumpTool() && 'needs cc and libbpf-dev';

t.test('core_kernel.o: identical to libbpf against the running kernel', { skip: (!hasVmlinux && 'no kernel BTF') || noRoot || noLibbpf }, async (t) => {
  await compareWithLibbpf(t, 'core_kernel.o', [loadKernelBtf()], undefined, {});
});

t.test('core_self.o: identical to libbpf against core_target.o (btf_custom_path)', { skip: noRoot || noLibbpf }, async (t) => {
  await compareWithLibbpf(t, 'core_self.o', [loadBtfFile(obj('core_target.o'))], obj('core_target.o'), {
    self_ambiguous: /field offset ambiguity: 128 != 32|field offset ambiguity/,
    self_enum_sign: /unexpected insn #0 \(LDIMM64\) value: got 2147483648, exp 18446744071562067968/,
  });
});

// ---- end to end ----

/** A UDP6 socket bound to an ephemeral port with SO_REUSEADDR and IPV6_V6ONLY, and its fd number. */
async function openSocket(): Promise<{ close: () => void; fd: number; port: number }> {
  const sock = dgram.createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '::', () => resolve());
  });
  const port = sock.address().port;
  // Find the socket's inode in /proc/self/net/udp6, then the fd that links to it.
  let inode: string | undefined;
  for (const line of readFileSync('/proc/self/net/udp6', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9 && parseInt(f[1]!.split(':')[1]!, 16) === port) inode = f[9];
  }
  if (!inode) throw new Error(`port ${port} not in /proc/self/net/udp6`);
  const fd = readdirSync('/proc/self/fd').map(Number).find((n) => {
    try {
      return readlinkSync(`/proc/self/fd/${n}`) === `socket:[${inode}]`;
    } catch {
      return false;
    }
  });
  if (fd === undefined) throw new Error(`no fd for socket inode ${inode}`);
  return { close: () => sock.close(), fd, port };
}

function procStat(): string[] {
  const s = readFileSync('/proc/self/stat', 'utf8');
  return s.slice(s.lastIndexOf(')') + 2).trim().split(' '); // [0] is field 3 (state)
}

function lineOf(objFile: string, line: number): string {
  const src = readFileSync(obj(objFile).replace(/\.o$/, '.c'), 'utf8').split('\n')[line - 1];
  return `line ${line}: ${src?.trim()}`;
}

t.test('core_kernel.o loads with Collection and every check passes in the kernel', { skip: (!hasVmlinux && 'no kernel BTF') || noRoot }, async (t) => {
  const kernel = loadKernelBtf();
  const spec = loadCollectionSpec(obj('core_kernel.o'));
  const task = kernel.findType('task_struct', 'struct');
  const stat = procStat();
  const auxv = readFileSync('/proc/self/auxv');
  const sock = await openSocket();
  t.teardown(sock.close);
  setVariable(spec, 'expected_ppid', process.ppid);
  setVariable(spec, 'expected_arg_start', BigInt(stat[48 - 3]!));
  setVariable(spec, 'expected_env_end', BigInt(stat[51 - 3]!));
  setVariable(spec, 'expected_auxv3', auxv.readBigUInt64LE(3 * 8));
  setVariable(spec, 'sock_fd', sock.fd);
  setVariable(spec, 'sock_port', sock.port);
  setVariable(spec, 'task_struct_kernel_id', task.id);
  setVariable(spec, 'task_struct_kernel_size', kernel.sizeof(task.id));
  setVariable(spec, 'mine_local_id', spec.btf!.findType('task_struct___mine', 'struct').id);
  const coll = new Collection(spec);
  t.teardown(() => coll.close());
  t.same(Object.keys(coll.programs).sort(), ['anon_array', 'bitfields', 'enums', 'exists', 'fields', 'types']);
  for (const [name, p] of Object.entries(coll.programs)) {
    const { retval } = p.run();
    t.equal(retval, 0, `${name}: ${retval ? lineOf('core_kernel.o', retval) : 'all checks pass'}`);
  }
});

t.test('a reachable poisoned relocation fails verification, naming the field', { skip: (!hasVmlinux && 'no kernel BTF') || noRoot }, async (t) => {
  const spec = loadCollectionSpec(obj('core_kernel.o'));
  const err = (() => {
    try {
      new Collection(spec, { programs: ['unguarded'] }).close();
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.ok(err instanceof VerifierError, 'VerifierError');
  const v = err as VerifierError;
  t.match(v.log, /invalid func unknown#195896080/, 'the kernel sees libbpf\'s poison call');
  t.match(v.message, /struct task_struct___old\.state/, 'the message names the field in source terms');
  t.match(v.message, /struct task_struct has no member state in the target/);
});

t.test('core_self.o relocated against core_target.o runs correctly', { skip: noRoot }, async (t) => {
  const target = loadBtfFile(obj('core_target.o'));
  const spec = loadCollectionSpec(obj('core_self.o'));
  const rec = target.findType('core_rec', 'struct');
  setVariable(spec, 'target_rec_id', rec.id);
  const coll = new Collection(spec, { kernelBtf: obj('core_target.o') });
  t.teardown(() => coll.close());
  t.same(Object.keys(coll.programs).sort(), ['self_bitfields', 'self_fields', 'self_prune', 'self_types_enums']);
  for (const [name, p] of Object.entries(coll.programs)) {
    const { retval } = p.run();
    t.equal(retval, 0, `${name}: ${retval ? lineOf('core_self.o', retval) : 'all checks pass'}`);
  }
  // The stores of self_fields landed at the target's offsets.
  const data = coll.readVariable('rec_data');
  const countAt = rec.kind === 'struct' ? rec.members.find((m) => m.name === 'count')!.bitOffset / 8 : -1;
  const innerAt = rec.kind === 'struct' ? rec.members.find((m) => m.name === 'inner')!.bitOffset / 8 : -1;
  t.equal(data.readUInt32LE(countAt), 0x1234, 'ST of a u16 widened to the target u32');
  t.equal(data.readBigUInt64LE(innerAt + 8), BigInt(innerAt + 8), 'STX at the relocated offset of inner.b (holding its own offset)');

  for (const [name, re] of [
    ['self_signed_resize', /struct core_rec___v1\.scount.*size changed \(2 → 4 bytes\)/],
    ['self_ambiguous', /ambiguous/],
    ['self_enum_sign', /expected the local value/],
  ] as const) {
    t.throws(() => new Collection(spec, { programs: [name], kernelBtf: target }).close(), re, `${name} does not load`);
  }
});
