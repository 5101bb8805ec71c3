// Linking a program: its entry function followed by every subprogram it
// reaches through bpf-to-bpf calls or callback references, with call offsets
// and .BTF.ext metadata rebased to the new layout. Pure: no kernel access.

import { TsbpfError } from '../errors.js';
import type { CoreRelo, FuncInfo, LineInfo } from '../btf/types.js';
import type { CollectionSpec, FunctionSpec, InsnReloc, ProgramSpec } from '../elf/spec.js';

export const INSN_SIZE = 8;
export const BPF_PSEUDO_MAP_FD = 1;
export const BPF_PSEUDO_MAP_VALUE = 2;
export const BPF_PSEUDO_BTF_ID = 3;
export const BPF_PSEUDO_FUNC = 4;
export const BPF_PSEUDO_CALL = 1;
export const BPF_PSEUDO_KFUNC_CALL = 2;
export const OP_LD_IMM64 = 0x18;
export const OP_CALL = 0x85;

/** A relocation still to resolve at load time, with an index into the linked program. */
export type LinkedReloc = Exclude<InsnReloc, { kind: 'call' } | { kind: 'func' }>;

export interface LinkedProgram {
  insns: Buffer;
  relocs: LinkedReloc[];
  funcInfos: FuncInfo[];
  lineInfos: LineInfo[];
  coreRelos: CoreRelo[];
  /** Keys of the functions laid out, entry first. */
  layout: string[];
}

export class LinkError extends TsbpfError {}

export function setSrcReg(insns: Buffer, idx: number, src: number): void {
  const b = insns[idx * INSN_SIZE + 1];
  insns[idx * INSN_SIZE + 1] = (b & 0x0f) | (src << 4);
}

export function setImm(insns: Buffer, idx: number, imm: number): void {
  insns.writeInt32LE(imm | 0, idx * INSN_SIZE + 4);
}

export function linkProgram(spec: CollectionSpec, prog: ProgramSpec): LinkedProgram {
  const order: FunctionSpec[] = [prog];
  const start = new Map<string, number>([[prog.key, 0]]);
  let total = prog.instructions.length / INSN_SIZE;
  // Depth-first in call-site order, each function once: a subprogram is appended where libbpf would
  // append it (right after its first caller's subtree so far), so translated instructions match libbpf's.
  const visit = (fn: FunctionSpec): void => {
    for (const r of fn.relocations) {
      if (r.kind !== 'call' && r.kind !== 'func') continue;
      if (start.has(r.target)) continue;
      const target = spec.functions[r.target];
      if (!target) {
        throw new LinkError(`program "${prog.name}": ${fn.name} references function ${r.target}, which the object does not define`);
      }
      start.set(r.target, total);
      total += target.instructions.length / INSN_SIZE;
      order.push(target);
      visit(target);
    }
  };
  visit(prog);
  const insns = Buffer.alloc(total * INSN_SIZE);
  const out: LinkedProgram = { insns, relocs: [], funcInfos: [], lineInfos: [], coreRelos: [], layout: order.map((f) => f.key) };
  for (const fn of order) {
    const base = start.get(fn.key)!;
    insns.set(fn.instructions, base * INSN_SIZE);
    for (const r of fn.relocations) {
      const at = base + r.insn;
      if (r.kind === 'call' || r.kind === 'func') {
        const target = start.get(r.target)!;
        // Both forms are relative to the next instruction; ld_imm64 is two slots but the
        // kernel counts from insn + 1 as for calls.
        setImm(insns, at, target - at - 1);
        if (r.kind === 'call') {
          setSrcReg(insns, at, BPF_PSEUDO_CALL);
        } else {
          setSrcReg(insns, at, BPF_PSEUDO_FUNC);
          setImm(insns, at + 1, 0);
        }
      } else {
        out.relocs.push({ ...r, insn: at });
      }
    }
    for (const f of fn.funcInfos) out.funcInfos.push({ ...f, insnOff: f.insnOff + base });
    for (const l of fn.lineInfos) out.lineInfos.push({ ...l, insnOff: l.insnOff + base });
    for (const c of fn.coreRelos) out.coreRelos.push({ ...c, insnOff: c.insnOff + base });
  }
  return out;
}
