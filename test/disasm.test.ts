import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { disassemble, badTargets, helperName, type DisasmInsn } from '../src/elf/disasm.js';
import { loadCollectionSpec } from '../src/elf/index.js';
import { Collection } from '../src/collection/collection.js';
import { BPF_DIR, obj } from './helpers/env.js';

/** Encode one instruction. */
function I(code: number, dst = 0, src = 0, off = 0, imm = 0): Buffer {
  const b = Buffer.alloc(8);
  b[0] = code;
  b[1] = (src << 4) | dst;
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm, 4);
  return b;
}

function texts(...insns: Buffer[]): string[] {
  return disassemble(Buffer.concat(insns)).map((d) => d.text);
}

t.test('every opcode class in the kernel notation', (t) => {
  t.same(texts(
    I(0x07, 1, 0, 0, 8), I(0x0f, 1, 2), I(0x04, 1, 0, 0, -1), I(0x0c, 3, 4), I(0xb7, 0, 0, 0, 0), I(0xbc, 1, 2),
    I(0x87, 5), I(0x84, 5), I(0xdc, 1, 0, 0, 16), I(0xd4, 2, 0, 0, 32), I(0xd7, 3, 0, 0, 64), I(0x3f, 1, 2, 1), I(0x97, 1, 0, 1, 3),
    I(0xbf, 1, 2, 8), I(0xc7, 1, 0, 0, 63), I(0x6f, 1, 2),
  ), [
    '(07) r1 += 8', '(0f) r1 += r2', '(04) w1 += -1', '(0c) w3 += w4', '(b7) r0 = 0', '(bc) w1 = w2',
    '(87) r5 = -r5', '(84) w5 = -w5', '(dc) r1 = be16 r1', '(d4) r2 = le32 r2', '(d7) r3 = bswap64 r3', '(3f) r1 s/= r2', '(97) r1 s%= 3',
    '(bf) r1 = (s8)r2', '(c7) r1 s>>= 63', '(6f) r1 <<= r2',
  ], 'ALU and ALU64');
  t.same(texts(
    I(0x7b, 10, 1, -8), I(0x62, 10, 0, -4, 7), I(0x79, 0, 1, 16), I(0x91, 2, 3, -1), I(0x30, 0, 0, 0, 12), I(0x48, 0, 6, 0, 2),
    I(0xc2),
  ), [
    '(7b) *(u64 *)(r10 -8) = r1', '(62) *(u32 *)(r10 -4) = 7', '(79) r0 = *(u64 *)(r1 +16)', '(91) r2 = *(s8 *)(r3 -1)',
    '(30) r0 = *(u8 *)skb[12]', '(48) r0 = *(u16 *)skb[r6 + 2]', '(c2) nospec',
  ], 'loads and stores');
  t.same(texts(
    I(0xdb, 1, 2, 0, 0x00), I(0xc3, 1, 2, 4, 0x50), I(0xdb, 1, 3, 0, 0x01), I(0xc3, 1, 3, 0, 0xa1), I(0xdb, 1, 4, 8, 0xe1),
    I(0xdb, 1, 5, 0, 0xf1), I(0xdb, 6, 1, 0, 0x100), I(0xdb, 1, 6, 0, 0x110),
  ), [
    '(db) lock *(u64 *)(r1 +0) += r2', '(c3) lock *(u32 *)(r1 +4) &= r2', '(db) r3 = atomic64_fetch_add((u64 *)(r1 +0), r3)',
    '(c3) r3 = atomic_fetch_xor((u32 *)(r1 +0), r3)', '(db) r4 = atomic64_xchg((u64 *)(r1 +8), r4)',
    '(db) r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r5)', '(db) r6 = load_acquire((u64 *)(r1 +0))', '(db) store_release((u64 *)(r1 +0), r6)',
  ], 'atomics');
  const ld = disassemble(Buffer.concat([
    I(0x18, 1, 0, 0, 0x5678), I(0, 0, 0, 0, 0x1234),
    I(0x18, 1, 1, 0, 7), I(0),
    I(0x18, 2, 2, 0, 7), I(0, 0, 0, 0, 16),
    I(0x18, 3, 4, 0, 3), I(0),
    I(0x18, 4, 5, 0, 1), I(0),
    I(0x95),
  ]));
  t.same(ld.map((d) => [d.index, d.text]), [
    [0, '(18) r1 = 0x123400005678'], [2, '(18) r1 = map[id:7]'], [4, '(18) r2 = map[id:7][0]+16'], [6, '(18) r3 = subprog[+3]'],
    [8, '(18) r4 = map[idx:1]'], [10, '(95) exit'],
  ], 'ld_imm64 takes two slots, pseudo sources named');
  t.equal(ld[3].target, 10, 'a function reference points at its instruction');
  const j = disassemble(Buffer.concat([
    I(0x05, 0, 0, 2), I(0x15, 1, 0, 1, 0), I(0x5d, 1, 2, -3), I(0x16, 1, 0, 0, -1), I(0xae, 3, 4, 1), I(0x06, 0, 0, 0, -6),
    I(0xe5, 0, 0, 1), I(0x85, 0, 0, 0, 1), I(0x85, 0, 1, 0, -9), I(0x85, 0, 2, 0, 4242), I(0x95),
  ]));
  t.same(j.map((d) => d.text), [
    '(05) goto pc+2', '(15) if r1 == 0x0 goto pc+1', '(5d) if r1 != r2 goto pc-3', '(16) if w1 == 0xffffffff goto pc+0', '(ae) if w3 < w4 goto pc+1',
    '(06) gotol pc-6', '(e5) may_goto pc+1', '(85) call bpf_map_lookup_elem#1', '(85) call pc-9', '(85) call kernel-function#4242', '(95) exit',
  ], 'jumps, calls, exit');
  t.same(j.map((d) => d.target), [3, 3, 0, 4, 6, 0, 8, undefined, 0, undefined, undefined], 'jump targets');
  t.equal(j[7].helper, 'bpf_map_lookup_elem');
  t.equal(helperName(113), 'bpf_probe_read_kernel');
  const bad = disassemble(Buffer.concat([I(0xff, 1, 2), I(0x18, 1)]));
  t.ok(bad.every((d) => d.invalid), 'unknown opcodes and a cut ld_imm64 are marked invalid, not thrown');
  t.end();
});

t.test('every function of every object in bpf/ disassembles cleanly', (t) => {
  let fns = 0;
  let insns = 0;
  for (const f of readdirSync(BPF_DIR).filter((n) => n.endsWith('.o') && n !== 'bad.o')) {
    const spec = loadCollectionSpec(obj(f));
    for (const fn of Object.values(spec.functions)) {
      const d = disassemble(fn.instructions);
      fns++;
      insns += d.length;
      const invalid = d.filter((x) => x.invalid);
      t.same(invalid.map((x) => x.text), [], `${f} ${fn.name}: no invalid instruction`);
      t.same(badTargets(d).map((x) => x.text), [], `${f} ${fn.name}: jumps land on instruction boundaries`);
      t.equal(d.reduce((n, x) => n + x.slots, 0), fn.instructions.length / 8, `${f} ${fn.name}: slots add up`);
      for (const r of fn.relocations) {
        if (r.kind === 'map' || r.kind === 'mapValue' || r.kind === 'func') {
          t.ok(d.some((x) => x.index === r.insn && x.code === 0x18), `${f} ${fn.name}: relocation at ${r.insn} is an ld_imm64`);
        }
      }
    }
  }
  t.ok(fns > 50 && insns > 2000, `${fns} functions, ${insns} instructions`);
  t.end();
});

/** bpftool's xlated lines `  12: (bf) r1 = r6` as [index, text]. */
function bpftoolXlated(id: number): [number, string][] {
  const out = execFileSync('bpftool', ['prog', 'dump', 'xlated', 'id', String(id)], { encoding: 'utf8', timeout: 60_000 });
  const res: [number, string][] = [];
  for (const l of out.split('\n')) {
    const m = /^\s*(\d+): (\(.*)$/.exec(l);
    if (m) res.push([Number(m[1]), m[2].trimEnd()]);
  }
  return res;
}

/**
 * Compare one instruction. Equal text, except for what bpftool resolves through kallsyms and JIT symbols:
 * helper calls in xlated code hold the address of the kernel function (bpftool names the function it
 * finds there, e.g. `__htab_map_lookup_elem`, we cannot), and bpf-to-bpf calls get `#bpf_prog_<tag>_<name>`.
 */
function sameInsn(ours: DisasmInsn, theirs: string): boolean {
  const text = ours.text;
  if (ours.code === 0x85 && ours.src === 0) return theirs.startsWith('(85) call ') && /#-?\d+$/.test(theirs);
  if (ours.code === 0x85 && ours.src === 1) return theirs.split('#')[0] === text;
  return text === theirs;
}

t.test('the xlated code of loaded programs matches `bpftool prog dump xlated`, instruction by instruction', (t) => {
  let exact = 0;
  let compared = 0;
  for (const o of ['loader.o', 'ringbuf_test.o', 'runqslower.o']) {
    const coll = new Collection(loadCollectionSpec(obj(o)));
    try {
      for (const [name, p] of Object.entries(coll.programs)) {
        const ours = disassemble(p.xlated());
        const theirs = bpftoolXlated(p.info().id);
        t.equal(ours.length, theirs.length, `${o} ${name}: as many instructions as bpftool`);
        const mismatches: string[] = [];
        for (let i = 0; i < Math.min(ours.length, theirs.length); i++) {
          compared++;
          if (ours[i].index !== theirs[i][0] || !sameInsn(ours[i], theirs[i][1])) mismatches.push(`${ours[i].index}: ${ours[i].text} | bpftool ${theirs[i][0]}: ${theirs[i][1]}`);
          else if (ours[i].text === theirs[i][1]) exact++;
        }
        t.same(mismatches, [], `${o} ${name}: every instruction agrees`);
        t.same(badTargets(ours).map((d) => d.text), [], `${o} ${name}: jumps land on instruction boundaries`);
      }
    } finally {
      coll.close();
    }
  }
  t.ok(exact > compared * 0.8, `${exact} of ${compared} instructions textually identical (the rest are calls)`);
  t.end();
});
