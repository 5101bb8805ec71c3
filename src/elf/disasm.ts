// A BPF instruction disassembler. The text of each instruction follows the notation of the kernel
// verifier log and of `bpftool prog dump xlated` (`(07) r1 += 8`, `(85) call bpf_map_lookup_elem#1`,
// `(15) if r1 == 0x0 goto pc+3`), so the output of both can be compared line by line. Written for tsbpf
// from the instruction set specification (Documentation/bpf/standardization/instruction-set.rst).
//
// Pure: works on raw little-endian instructions (an object's, or `Program.xlated()`), with optional
// callbacks to name what an instruction refers to (maps, subprograms, kfuncs) in place of raw numbers.

import { BPF_FUNC } from '../syscall/kernel-defs.generated.js';

export const INSN_BYTES = 8;

// Classes
const LD = 0x00, LDX = 0x01, ST = 0x02, STX = 0x03, ALU = 0x04, JMP = 0x05, JMP32 = 0x06, ALU64 = 0x07;
// Modes
const IMM = 0x00, ABS = 0x20, IND = 0x40, MEM = 0x60, MEMSX = 0x80, ATOMIC = 0xc0;
// Sizes
const SIZE_NAMES: Record<number, string> = { 0x00: 'u32', 0x08: 'u16', 0x10: 'u8', 0x18: 'u64' };
const SIZE_BITS: Record<number, number> = { 0x00: 32, 0x08: 16, 0x10: 8, 0x18: 64 };

/** ld_imm64 source registers (BPF_PSEUDO_*). */
export const PSEUDO = {
  MAP_FD: 1,
  MAP_VALUE: 2,
  BTF_ID: 3,
  FUNC: 4,
  MAP_IDX: 5,
  MAP_IDX_VALUE: 6,
} as const;
/** call source registers. */
export const PSEUDO_CALL = 1;
export const PSEUDO_KFUNC_CALL = 2;

const ALU_OPS: Record<number, string> = {
  0x00: '+=', 0x10: '-=', 0x20: '*=', 0x30: '/=', 0x40: '|=', 0x50: '&=', 0x60: '<<=', 0x70: '>>=',
  0x90: '%=', 0xa0: '^=', 0xb0: '=', 0xc0: 's>>=',
};
const JMP_OPS: Record<number, string> = {
  0x10: '==', 0x20: '>', 0x30: '>=', 0x40: '&', 0x50: '!=', 0x60: 's>', 0x70: 's>=',
  0xa0: '<', 0xb0: '<=', 0xc0: 's<', 0xd0: 's<=',
};
const ATOMIC_NAMES: Record<number, string> = { 0x00: 'add', 0x40: 'or', 0x50: 'and', 0xa0: 'xor' };
const ATOMIC_FETCH = 0x01, ATOMIC_XCHG = 0xe1, ATOMIC_CMPXCHG = 0xf1, ATOMIC_LOAD_ACQ = 0x100, ATOMIC_STORE_REL = 0x110;
/** BPF_MAY_GOTO: the src_reg of a BPF_JMP|BPF_JCOND instruction. */
const MAY_GOTO = 0;
/** imm of the internal per-CPU address move (`r0 = &(void __percpu *)(r0)`). */
const ADDR_PERCPU = -1;
/** off of `addr_space_cast` moves. */
const ADDR_SPACE_CAST = 1;

const HELPER_NAMES = new Map<number, string>(Object.entries(BPF_FUNC).map(([k, v]) => [v as number, `bpf_${k}`]));

/** `bpf_map_lookup_elem` for 1, `unknown` for an id tsbpf's definitions do not name (or an xlated call address). */
export function helperName(id: number): string {
  return HELPER_NAMES.get(id) ?? 'unknown';
}

/** One decoded instruction (an ld_imm64 covers two slots). */
export interface RawInsn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** ld_imm64: the full 64-bit immediate (imm of the second slot in the high half). */
  imm64?: bigint;
}

export interface DisasmInsn extends RawInsn {
  /** Index (in 8-byte slots) of the instruction. */
  index: number;
  /** 1, or 2 for ld_imm64. */
  slots: number;
  /** Text in the kernel's notation, e.g. `(bf) r6 = r1`. */
  text: string;
  /** Jumps and bpf-to-bpf calls: the slot index they go to. */
  target?: number;
  /** Helper calls: the helper's name. */
  helper?: string;
  /** true when the instruction is not valid BPF (unknown opcode, ld_imm64 cut short). */
  invalid?: boolean;
}

export interface DisasmOptions {
  /**
   * Text for the immediate of an ld_imm64 (`map[counts]`, `map[.bss]+16`), or undefined for the default
   * (`map[id:N]`, `map[id:N][0]+off`, `0x...`). `index` is the slot of the instruction.
   */
  imm64?: (insn: RawInsn, index: number) => string | undefined;
  /**
   * Text of a call target in place of the default (`bpf_name#id`, `pc+N`, `kernel-function#id`), e.g.
   * `pc+5#add_mul` for a subprogram or `bpf_task_acquire#0` for a kfunc.
   */
  call?: (insn: RawInsn, index: number) => string | undefined;
}

function hex(n: number): string {
  return (n >>> 0).toString(16);
}

function off(n: number): string {
  return n < 0 ? String(n) : `+${n}`;
}

function decode(buf: Buffer, i: number): RawInsn {
  const o = i * INSN_BYTES;
  const regs = buf[o + 1];
  return { code: buf[o], dst: regs & 0x0f, src: regs >> 4, off: buf.readInt16LE(o + 2), imm: buf.readInt32LE(o + 4) };
}

/** Disassembles `insns` (8-byte little-endian instructions). Never throws for bad code: it says `invalid`. */
export function disassemble(insns: Buffer | Uint8Array, o: DisasmOptions = {}): DisasmInsn[] {
  const buf = Buffer.isBuffer(insns) ? insns : Buffer.from(insns.buffer, insns.byteOffset, insns.byteLength);
  const n = Math.floor(buf.length / INSN_BYTES);
  const out: DisasmInsn[] = [];
  for (let i = 0; i < n; ) {
    const raw = decode(buf, i);
    const d = disasmOne(raw, i, buf, n, o);
    out.push(d);
    i += d.slots;
  }
  return out;
}

function disasmOne(raw: RawInsn, i: number, buf: Buffer, n: number, o: DisasmOptions): DisasmInsn {
  const { code, dst, src } = raw;
  const cls = code & 0x07;
  const head = `(${code.toString(16).padStart(2, '0')})`;
  const res = (text: string, extra: Partial<DisasmInsn> = {}): DisasmInsn => ({ ...raw, index: i, slots: 1, text: `${head} ${text}`, ...extra });
  const bad = (): DisasmInsn => ({ ...raw, index: i, slots: 1, text: `${head} invalid (dst r${dst} src r${src} off ${raw.off} imm ${raw.imm})`, invalid: true });
  switch (cls) {
    case ALU:
    case ALU64: {
      const is64 = cls === ALU64;
      const r = is64 ? 'r' : 'w';
      const op = code & 0xf0;
      const x = (code & 0x08) !== 0;
      if (op === 0xd0) {
        // Byte swaps: BPF_ALU|BPF_END to le/be (source bit), BPF_ALU64|BPF_END unconditional bswap.
        if (![16, 32, 64].includes(raw.imm)) return bad();
        const kind = is64 ? 'bswap' : x ? 'be' : 'le';
        return res(`r${dst} = ${kind}${raw.imm} r${dst}`);
      }
      if (op === 0x80) return res(`${r}${dst} = -${r}${dst}`);
      let opStr = ALU_OPS[op];
      if (opStr === undefined) return bad();
      if ((op === 0x30 || op === 0x90) && raw.off === 1) opStr = op === 0x30 ? 's/=' : 's%=';
      if (!x) return res(`${r}${dst} ${opStr} ${raw.imm}`);
      if (op === 0xb0) {
        if (is64 && raw.off === ADDR_SPACE_CAST) return res(`r${dst} = addr_space_cast(r${src}, ${raw.imm >>> 16}, ${raw.imm & 0xffff})`);
        if (is64 && raw.off === 0 && raw.imm === ADDR_PERCPU) return res(`r${dst} = &(void __percpu *)(r${src})`);
        if (raw.off === 8 || raw.off === 16 || raw.off === 32) return res(`${r}${dst} = (s${raw.off})${r}${src}`);
      }
      return res(`${r}${dst} ${opStr} ${r}${src}`);
    }
    case STX: {
      const mode = code & 0xe0;
      const size = SIZE_NAMES[code & 0x18];
      const dw = (code & 0x18) === 0x18;
      const mem = `(${size} *)(r${dst} ${off(raw.off)})`;
      if (mode === MEM) return res(`*${mem} = r${src}`);
      if (mode !== ATOMIC) return bad();
      const imm = raw.imm;
      const alu = ATOMIC_NAMES[imm & ~ATOMIC_FETCH];
      if (alu !== undefined && (imm & ATOMIC_FETCH) === 0) return res(`lock *${mem} ${ALU_OPS[imm]} r${src}`);
      if (alu !== undefined) return res(`r${src} = atomic${dw ? '64' : ''}_fetch_${alu}(${mem}, r${src})`);
      if (imm === ATOMIC_XCHG) return res(`r${src} = atomic${dw ? '64' : ''}_xchg(${mem}, r${src})`);
      if (imm === ATOMIC_CMPXCHG) return res(`r0 = atomic${dw ? '64' : ''}_cmpxchg(${mem}, r0, r${src})`);
      if (imm === ATOMIC_LOAD_ACQ) return res(`r${dst} = load_acquire((${size} *)(r${src} ${off(raw.off)}))`);
      if (imm === ATOMIC_STORE_REL) return res(`store_release(${mem}, r${src})`);
      return bad();
    }
    case ST: {
      const mode = code & 0xe0;
      if (code === 0xc2) return res('nospec');
      if (mode !== MEM) return bad();
      return res(`*(${SIZE_NAMES[code & 0x18]} *)(r${dst} ${off(raw.off)}) = ${raw.imm}`);
    }
    case LDX: {
      const mode = code & 0xe0;
      if (mode === MEM) return res(`r${dst} = *(${SIZE_NAMES[code & 0x18]} *)(r${src} ${off(raw.off)})`);
      if (mode === MEMSX) return res(`r${dst} = *(s${SIZE_BITS[code & 0x18]} *)(r${src} ${off(raw.off)})`);
      return bad();
    }
    case LD: {
      const mode = code & 0xe0;
      const size = SIZE_NAMES[code & 0x18];
      if (mode === ABS) return res(`r0 = *(${size} *)skb[${raw.imm}]`);
      if (mode === IND) return res(`r0 = *(${size} *)skb[r${src} + ${raw.imm}]`);
      if (mode === IMM && (code & 0x18) === 0x18) {
        if (i + 1 >= n) return { ...bad(), text: `${head} invalid: ld_imm64 without its second half` };
        const hi = buf.readInt32LE((i + 1) * INSN_BYTES + 4);
        const imm64 = (BigInt(hi >>> 0) << 32n) | BigInt(raw.imm >>> 0);
        const withImm = { ...raw, imm64 };
        const custom = o.imm64?.(withImm, i);
        const text = custom ?? defaultImm64(withImm, hi);
        const extra: Partial<DisasmInsn> = { slots: 2, imm64 };
        if (src === PSEUDO.FUNC) extra.target = i + raw.imm + 1;
        return res(`r${dst} = ${text}`, extra);
      }
      return bad();
    }
    case JMP:
    case JMP32: {
      const op = code & 0xf0;
      const r = cls === JMP32 ? 'w' : 'r';
      if (op === 0x00) {
        if (cls === JMP32) return res(`gotol pc${off(raw.imm)}`, { target: i + raw.imm + 1 });
        return res(`goto pc${off(raw.off)}`, { target: i + raw.off + 1 });
      }
      if (op === 0x80 && cls === JMP) {
        const custom = o.call?.(raw, i);
        if (src === PSEUDO_CALL) {
          // In an object (and before JIT) imm is the pc-relative offset; in the xlated code of a JITed
          // program the kernel keeps the offset in `off` and the subprogram's index in imm.
          const rel = raw.off !== 0 ? raw.off : raw.imm;
          return res(`call ${custom ?? `pc${off(rel)}`}`, { target: i + rel + 1 });
        }
        if (src === PSEUDO_KFUNC_CALL) return res(`call ${custom ?? `kernel-function#${raw.imm}`}`);
        const name = helperName(raw.imm);
        return res(`call ${custom ?? `${name}#${raw.imm}`}`, HELPER_NAMES.has(raw.imm) ? { helper: name } : {});
      }
      if (op === 0x90 && cls === JMP) return res('exit');
      if (op === 0xe0 && cls === JMP && src === MAY_GOTO) return res(`may_goto pc${off(raw.off)}`, { target: i + raw.off + 1 });
      const cmp = JMP_OPS[op];
      if (cmp === undefined) return bad();
      const rhs = (code & 0x08) !== 0 ? `${r}${src}` : `0x${hex(raw.imm)}`;
      return res(`if ${r}${dst} ${cmp} ${rhs} goto pc${off(raw.off)}`, { target: i + raw.off + 1 });
    }
  }
  return bad();
}

function defaultImm64(raw: RawInsn, hi: number): string {
  switch (raw.src) {
    case PSEUDO.MAP_FD:
      return `map[id:${raw.imm >>> 0}]`;
    case PSEUDO.MAP_VALUE:
      return `map[id:${raw.imm >>> 0}][0]+${hi >>> 0}`;
    case PSEUDO.MAP_IDX:
      return `map[idx:${raw.imm >>> 0}]`;
    case PSEUDO.MAP_IDX_VALUE:
      return `map[idx:${raw.imm >>> 0}]+${hi >>> 0}`;
    case PSEUDO.FUNC:
      return `subprog[${off(raw.imm)}]`;
    case PSEUDO.BTF_ID:
      return `btf_id[${raw.imm >>> 0}]`;
    default:
      return `0x${raw.imm64!.toString(16)}`;
  }
}

/** `   12: (bf) r1 = r6`: bpftool's line format. */
export function formatInsn(d: DisasmInsn, width = 4): string {
  return `${String(d.index).padStart(width)}: ${d.text}`;
}

/**
 * Checks that every jump lands on the start of an instruction inside the code (not in the second half
 * of an ld_imm64, not past the end). Calls are not checked: in an object they may go to another
 * function. Returns the offending instructions.
 */
export function badTargets(insns: DisasmInsn[]): DisasmInsn[] {
  const starts = new Set(insns.map((d) => d.index));
  const end = insns.length ? insns[insns.length - 1].index + insns[insns.length - 1].slots : 0;
  const isCall = (d: DisasmInsn): boolean => (d.code & 0x07) === LD || d.code === 0x85;
  return insns.filter((d) => d.target !== undefined && !isCall(d) && (!starts.has(d.target) || d.target >= end));
}
