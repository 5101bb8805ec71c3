// Translated instructions (BPF_OBJ_GET_INFO_BY_FD xlated_prog_insns) of a loaded
// program, normalized so that two loads of the same program by different
// loaders compare equal when the kernel holds the same code:
//
// - ld_imm64 of a map (src_reg BPF_PSEUDO_MAP_FD / MAP_VALUE in the dump, which
//   carries the map's id) → the map's name (+ value offset): ids differ per load;
// - ld_imm64 of a callback (BPF_PSEUDO_FUNC, a JIT address in the dump) → the index
//   of the function in the program's jited_ksyms;
// - ld_imm64 of a kernel address (src_reg 0, e.g. a per-program `prog->aux` pointer
//   the verifier inlines for bpf_timer_set_callback) → "kernel address".
//
// Everything else is compared byte for byte. Used by test/differential.test.ts and
// scripts/compat.ts.

import { BpfMap, type CollectionSpec, type Program } from '../src/index.js';
import { layoutSize, objGetInfo, readU32, writeFields } from '../src/syscall/index.js';

export interface XInsn {
  /** Index of the first 8-byte slot. */
  index: number;
  /** 1, or 2 for ld_imm64. */
  slots: number;
  /** The raw encoding, hex, as the kernel reported it. */
  raw: string;
  /** Comparison key: raw encoding, or a normalized form for map/func/kernel-address loads. */
  key: string;
  /** Readable form (normalized). */
  text: string;
  /** For bpf-to-bpf calls and callback references: the subprogram index, and the key without it. */
  callee?: number;
  shape?: string;
}

/** A program's normalized instructions and where its functions start (slot indices, entry first). */
export interface XProgram {
  insns: XInsn[];
  funcStarts: number[];
}

const PSEUDO_MAP_FD = 1;
const PSEUDO_MAP_VALUE = 2;
const PSEUDO_BTF_ID = 3;
const PSEUDO_FUNC = 4;
const PSEUDO_MAP_IDX = 5;
const PSEUDO_MAP_IDX_VALUE = 6;

/** Names of map ids, looked up once per id. */
export class MapNames {
  #cache = new Map<number, string>();
  name(id: number): string {
    let n = this.#cache.get(id);
    if (n === undefined) {
      try {
        const m = BpfMap.fromId(id);
        try {
          n = m.info().name || `<unnamed ${m.info().type}>`;
        } finally {
          m.close();
        }
      } catch {
        n = `<map id ${id}>`;
      }
      this.#cache.set(id, n);
    }
    return n;
  }
}

/** Addresses of a program's JITed functions (entry first), for BPF_PSEUDO_FUNC. */
export function jitedKsyms(fd: number): bigint[] {
  const L = 'bpf_prog_info' as const;
  const size = layoutSize(L);
  const n = readU32(objGetInfo(fd, size).info, 0, L, 'nr_jited_ksyms');
  if (!n) return [];
  const r = objGetInfo(fd, size, n * 8 + 8, (inf, out) => {
    writeFields(inf.view, inf.off, L, { nr_jited_ksyms: n, jited_ksyms: out(n * 8) });
  });
  return Array.from({ length: n }, (_, i) => r.outs[0].readBigUInt64LE(i * 8));
}

/** Start (insn index) of every function of a program, from the func_info the kernel keeps (empty without BTF). */
export function funcInfoStarts(fd: number): number[] {
  const L = 'bpf_prog_info' as const;
  const size = layoutSize(L);
  const first = objGetInfo(fd, size).info;
  const n = readU32(first, 0, L, 'nr_func_info');
  const rec = readU32(first, 0, L, 'func_info_rec_size') || 8;
  if (!n) return [];
  const r = objGetInfo(fd, size, n * rec + 8, (inf, out) => {
    writeFields(inf.view, inf.off, L, { nr_func_info: n, func_info_rec_size: rec, func_info: out(n * rec) });
  });
  return Array.from({ length: n }, (_, i) => r.outs[0].readUInt32LE(i * rec));
}

/** Normalize a program's translated instructions. */
export function xlatedOf(prog: Program, names = new MapNames()): XInsn[] {
  return normalizeXlated(prog.xlated(), names, () => jitedKsyms(prog.fd));
}

/** Normalized instructions plus function boundaries, for compareLayoutFree. */
export function xlatedProgramOf(prog: Program, names = new MapNames()): XProgram {
  const insns = xlatedOf(prog, names);
  let starts = funcInfoStarts(prog.fd);
  if (!starts.length) {
    // No func_info: functions start at 0 and at every bpf-to-bpf call target.
    const set = new Set<number>([0]);
    for (const x of insns) if (x.callee !== undefined && x.slots === 1) set.add(x.index + 1 + Buffer.from(x.raw, 'hex').readInt16LE(2));
    starts = [...set].sort((a, b) => a - b);
  }
  return { insns, funcStarts: starts };
}

export function normalizeXlated(buf: Buffer, names: MapNames, ksyms: () => bigint[] = () => []): XInsn[] {
  const out: XInsn[] = [];
  let syms: bigint[] | undefined;
  const n = buf.length / 8;
  for (let i = 0; i < n; i++) {
    const op = buf[i * 8];
    const dst = buf[i * 8 + 1] & 0xf;
    const src = buf[i * 8 + 1] >> 4;
    if (op === 0x18 && i + 1 < n) {
      const raw = buf.subarray(i * 8, i * 8 + 16).toString('hex');
      const lo = buf.readUInt32LE(i * 8 + 4);
      const hi = buf.readUInt32LE(i * 8 + 12);
      const v = (BigInt(hi) << 32n) | BigInt(lo);
      let key: string;
      let text: string;
      if (src === PSEUDO_MAP_FD || src === PSEUDO_MAP_IDX) {
        key = text = `r${dst} = map[${names.name(lo)}]`;
      } else if (src === PSEUDO_MAP_VALUE || src === PSEUDO_MAP_IDX_VALUE) {
        key = text = `r${dst} = &map[${names.name(lo)}] + ${hi}`;
      } else if (src === PSEUDO_FUNC) {
        syms ??= ksyms();
        const k = syms.indexOf(v);
        key = text = `r${dst} = func#${k < 0 ? '?' : k}`;
        out.push({ index: i, slots: 2, raw, key, text, callee: k < 0 ? undefined : k, shape: `r${dst} = func` });
        i++;
        continue;
      } else if (src === 0 && v >= 0xffff800000000000n) {
        key = `r${dst} = <kernel address>`;
        text = `r${dst} = 0x${v.toString(16)} ll (kernel address)`;
      } else {
        key = raw;
        text = `r${dst} = ${src === PSEUDO_BTF_ID ? `btf_id ${lo}` : `0x${v.toString(16)} ll`}${src && src !== PSEUDO_BTF_ID ? ` (src_reg ${src})` : ''}`;
      }
      out.push({ index: i, slots: 2, raw, key, text });
      i++;
      continue;
    }
    const raw = buf.subarray(i * 8, i * 8 + 8).toString('hex');
    if (op === 0x85 && src === 1) {
      // bpf-to-bpf call: off = relative target, imm = subprogram index (after JIT)
      const callee = buf.readInt32LE(i * 8 + 4);
      out.push({ index: i, slots: 1, raw, key: raw, text: disasm(buf, i), callee, shape: `call r${dst}` });
      continue;
    }
    out.push({ index: i, slots: 1, raw, key: raw, text: disasm(buf, i) });
  }
  return out;
}

const ALU = ['+=', '-=', '*=', '/=', '|=', '&=', '<<=', '>>=', 'neg', '%=', '^=', '=', 's>>=', 'end'];
const JMP = ['goto', '==', '>', '>=', '&', '!=', 's>', 's>=', 'call', 'exit', '<', '<=', 's<', 's<='];
const SIZE = ['u32', 'u16', 'u8', 'u64'];

/** One instruction, roughly as `bpftool prog dump xlated` prints it. */
export function disasm(buf: Buffer, i: number): string {
  const op = buf[i * 8];
  const dst = buf[i * 8 + 1] & 0xf;
  const src = buf[i * 8 + 1] >> 4;
  const off = buf.readInt16LE(i * 8 + 2);
  const imm = buf.readInt32LE(i * 8 + 4);
  const cls = op & 7;
  const x = (op & 8) !== 0;
  const sz = SIZE[(op >> 3) & 3];
  const mode = op & 0xe0;
  const o = off >= 0 ? `+${off}` : `${off}`;
  switch (cls) {
    case 4: // ALU
    case 7: {
      // ALU64
      const w = cls === 4 ? 'w' : 'r';
      const a = ALU[op >> 4] ?? `alu?${op >> 4}`;
      if (a === 'neg') return `${w}${dst} = -${w}${dst}`;
      if (a === 'end') return `${w}${dst} = ${x ? 'be' : 'le'}${imm} ${w}${dst}`;
      return `${w}${dst} ${a} ${x ? `${w}${src}` : imm}${off ? ` (off ${off})` : ''}`;
    }
    case 5: // JMP
    case 6: {
      // JMP32
      const j = JMP[op >> 4] ?? `jmp?${op >> 4}`;
      const w = cls === 5 ? 'r' : 'w';
      if (j === 'exit') return 'exit';
      if (j === 'call') {
        if (src === 1) return `call pc${o} (subprog #${imm})`;
        if (src === 2) return `call kfunc imm ${imm}${off ? ` off ${off}` : ''}`;
        return `call helper imm ${imm}`;
      }
      if (j === 'goto') return `goto pc${cls === 6 ? (imm >= 0 ? `+${imm}` : imm) : o}`;
      return `if ${w}${dst} ${j} ${x ? `${w}${src}` : imm} goto pc${o}`;
    }
    case 1: // LDX
      return `r${dst} = *(${sz} *)(r${src} ${o})${mode === 0x60 ? '' : ` (mode 0x${mode.toString(16)})`}`;
    case 2: // ST
      return `*(${sz} *)(r${dst} ${o}) = ${imm}`;
    case 3: // STX
      if (mode === 0xc0) return `atomic(0x${(imm >>> 0).toString(16)}) *(${sz} *)(r${dst} ${o}), r${src}`;
      return `*(${sz} *)(r${dst} ${o}) = r${src}`;
    case 0: // LD (abs/ind)
      return `ld ${sz} mode 0x${mode.toString(16)} src r${src} imm ${imm}`;
    default:
      return `op 0x${op.toString(16)}`;
  }
}

export interface XlatedDiff {
  identical: boolean;
  /** Number of differing instructions (positions that differ plus the length difference). */
  differing: number;
  lengthA: number;
  lengthB: number;
  /** The first difference, when any. */
  first?: { position: number; a?: XInsn; b?: XInsn };
}

export function compareXlated(a: XInsn[], b: XInsn[]): XlatedDiff {
  let differing = 0;
  let first: XlatedDiff['first'];
  const n = Math.max(a.length, b.length);
  for (let k = 0; k < n; k++) {
    const x = a[k];
    const y = b[k];
    if (x && y && x.key === y.key) continue;
    differing++;
    first ??= { position: k, a: x, b: y };
  }
  const lengthA = a.reduce((s, x) => s + x.slots, 0);
  const lengthB = b.reduce((s, x) => s + x.slots, 0);
  return { identical: differing === 0, differing, lengthA, lengthB, first };
}

/**
 * Equal up to the order of subprograms: split both programs into functions, pair
 * the entries, then pair callees through the calls and callback references met at
 * the same place, and compare every paired function instruction by instruction
 * (calls compared by the pairing). Loaders may lay subprograms out in different
 * orders; the code the kernel runs is then the same.
 */
export function sameUpToLayout(a: XProgram, b: XProgram): boolean {
  const split = (p: XProgram): XInsn[][] | undefined => {
    const starts = [...p.funcStarts].sort((x, y) => x - y);
    if (starts[0] !== 0) return undefined;
    const fns: XInsn[][] = starts.map(() => []);
    let f = 0;
    for (const x of p.insns) {
      while (f + 1 < starts.length && x.index >= starts[f + 1]) f++;
      fns[f].push(x);
    }
    return fns;
  };
  const fa = split(a);
  const fb = split(b);
  if (!fa || !fb || fa.length !== fb.length) return false;
  const ab = new Map<number, number>([[0, 0]]);
  const ba = new Map<number, number>([[0, 0]]);
  const queue: [number, number][] = [[0, 0]];
  const done = new Set<number>();
  while (queue.length) {
    const [x, y] = queue.shift()!;
    if (done.has(x)) continue;
    done.add(x);
    const ia = fa[x];
    const ib = fb[y];
    if (!ia || !ib || ia.length !== ib.length) return false;
    for (let k = 0; k < ia.length; k++) {
      const p = ia[k];
      const q = ib[k];
      if (p.callee === undefined || q.callee === undefined) {
        if (p.key !== q.key) return false;
        continue;
      }
      if (p.shape !== q.shape) return false;
      const m = ab.get(p.callee);
      const n = ba.get(q.callee);
      if (m === undefined && n === undefined) {
        ab.set(p.callee, q.callee);
        ba.set(q.callee, p.callee);
        queue.push([p.callee, q.callee]);
      } else if (m !== q.callee || n !== p.callee) {
        return false;
      }
    }
  }
  return done.size === fa.length;
}

const show = (x?: XInsn): string => (x ? `#${x.index} ${x.raw}  ${x.text}` : '(none: stream ended)');

/** "insn #12: libbpf 85000000..  call helper 1 | tsbpf ..." */
export function describeDiff(d: XlatedDiff, la = 'libbpf', lb = 'tsbpf'): string {
  if (d.identical || !d.first) return `identical (${d.lengthA} insns)`;
  const { a, b } = d.first;
  const idx = a?.index ?? b?.index;
  const len = d.lengthA !== d.lengthB ? `; ${la} has ${d.lengthA} insns, ${lb} ${d.lengthB}` : '';
  return `${d.differing} differ, first at insn ${idx}${len}\n    ${la}: ${show(a)}\n    ${lb}: ${show(b)}`;
}

/** One line version of describeDiff, for tables. */
export function summarizeDiff(d: XlatedDiff): string {
  if (d.identical || !d.first) return 'identical';
  const { a, b } = d.first;
  return `insn ${a?.index ?? b?.index}: \`${a?.text ?? '(end)'}\` vs \`${b?.text ?? '(end)'}\`${d.lengthA !== d.lengthB ? ` (${d.lengthA} vs ${d.lengthB} insns)` : ''}`;
}

/**
 * `.kconfig` values a loader computes from the host rather than reads from the kernel
 * config, which libbpf and tsbpf may legitimately compute differently on one host:
 * libbpf 1.1 sets LINUX_HAS_SYSCALL_WRAPPER by opening a kprobe perf event on
 * `__<arch>_sys_bpf`, so on a host without the kprobe PMU it says 0 even where
 * syscalls do have wrappers. When the translated instructions differ, loading tsbpf
 * again with each alternative tells whether that value is the only difference.
 */
export function kconfigAlternatives(spec: CollectionSpec): Record<string, number>[] {
  const out: Record<string, number>[] = [];
  if (spec.btf?.typesByName('LINUX_HAS_SYSCALL_WRAPPER').some((t) => t.kind === 'var')) {
    out.push({ LINUX_HAS_SYSCALL_WRAPPER: 0 }, { LINUX_HAS_SYSCALL_WRAPPER: 1 });
  }
  return out;
}
