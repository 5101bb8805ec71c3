// Functions of executable sections: splitting a section into functions by its
// STT_FUNC symbols, turning the section's relocations into per-function
// InsnRelocs, and splitting .BTF.ext records per function.

import type { BtfExt } from '../btf/types.js';
import { ElfError } from '../errors.js';
import type { FunctionSpec, InsnReloc, ProgramSpec } from './spec.js';
import type { ElfSection } from './reader.js';
import { classifySection } from './section-types.js';
import { isExported, SHN_LORESERVE, SHN_UNDEF, STB, STT, type ElfRelocation, type ElfSymbol } from './symbols.js';

export const INSN_SIZE = 8;
/** BPF_JMP | BPF_CALL */
const OP_CALL = 0x85;
/** BPF_LD | BPF_IMM | BPF_DW: the 16-byte load of a 64-bit immediate. */
const OP_LD_IMM64 = 0x18;
/** src_reg of a call to another BPF function (bpf-to-bpf call). */
const BPF_PSEUDO_CALL = 1;

/** A function and where it sits in its section (in instructions). */
export interface FunctionEntry {
  spec: FunctionSpec | ProgramSpec;
  isProgram: boolean;
  /** The function's symbol. */
  symbol: ElfSymbol;
  /** First instruction, section relative. */
  start: number;
  /** One past the last instruction, section relative. */
  end: number;
}

export interface ExecSection {
  section: ElfSection;
  /** Sorted by start, non-overlapping. */
  functions: FunctionEntry[];
}

/** Splits an executable section into its functions; `symbols` are those of this section. */
export function splitFunctions(
  section: ElfSection,
  symbols: ElfSymbol[],
  license: string,
  kernelVersion: number,
): ExecSection {
  const secName = section.name;
  const fail = (msg: string): never => {
    throw new ElfError(`section ${secName}: ${msg}`, { section: secName });
  };
  const data = section.data;
  if (data.length % INSN_SIZE !== 0) fail(`size ${data.length} is not a multiple of ${INSN_SIZE}`);
  const syms = symbols
    .filter((s) => s.type === STT.FUNC && s.shndx === section.index)
    .sort((a, b) => a.value - b.value || a.index - b.index);

  const isText = secName === '.text';
  const info = isText ? undefined : classifySection(secName);
  const functions: FunctionEntry[] = [];
  // Static linking can leave two static functions of the same name in one section: their keys
  // then carry the instruction offset too.
  const nameCount = new Map<string, number>();
  for (const s of syms) nameCount.set(s.name, (nameCount.get(s.name) ?? 0) + 1);
  for (let i = 0; i < syms.length; i++) {
    const sym = syms[i];
    if (!sym.name) fail(`function symbol ${sym.index} has no name`);
    if (sym.value % INSN_SIZE !== 0 || sym.value >= data.length) {
      fail(`function ${sym.name} starts at byte ${sym.value}, which is not an instruction of the section`);
    }
    const next = i + 1 < syms.length ? syms[i + 1].value : data.length;
    if (next === sym.value) fail(`functions ${sym.name} and ${syms[i + 1].name} start at the same offset ${sym.value}`);
    const size = sym.size > 0 ? sym.size : next - sym.value;
    if (size % INSN_SIZE !== 0) fail(`function ${sym.name} has size ${size}, not a multiple of ${INSN_SIZE}`);
    if (sym.value + size > next) fail(`function ${sym.name} (${size} bytes at ${sym.value}) overlaps what follows it`);
    const start = sym.value / INSN_SIZE;
    const end = start + size / INSN_SIZE;
    const global = isExported(sym);
    const base: FunctionSpec = {
      name: sym.name,
      key: nameCount.get(sym.name)! > 1 ? `${secName}/${sym.name}@${sym.value / INSN_SIZE}` : `${secName}/${sym.name}`,
      section: secName,
      sectionOffset: start,
      instructions: Buffer.from(data.subarray(sym.value, sym.value + size)),
      relocations: [],
      funcInfos: [],
      lineInfos: [],
      coreRelos: [],
      global,
    };
    // Global functions outside .text are programs; static ones there are
    // helpers of the programs in the same section.
    if (info && sym.bind !== STB.LOCAL) {
      const prog: ProgramSpec = {
        ...base,
        type: info.type,
        expectedAttachType: info.expectedAttachType,
        attachTo: info.attachTo,
        sectionKind: info.sectionKind,
        flags: info.flags,
        autoload: info.autoload,
        license,
        kernelVersion,
      };
      functions.push({ spec: prog, isProgram: true, symbol: sym, start, end });
    } else {
      functions.push({ spec: base, isProgram: false, symbol: sym, start, end });
    }
  }
  return { section, functions };
}

/** The function of `exec` containing instruction `insn` (section relative), if any. */
export function functionAt(exec: ExecSection, insn: number): FunctionEntry | undefined {
  const fns = exec.functions;
  let lo = 0;
  let hi = fns.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const f = fns[mid];
    if (insn < f.start) hi = mid - 1;
    else if (insn >= f.end) lo = mid + 1;
    else return f;
  }
  return undefined;
}

/** The function of `exec` that starts exactly at instruction `insn`, if any. */
function functionStartingAt(exec: ExecSection, insn: number): FunctionEntry | undefined {
  const f = functionAt(exec, insn);
  return f && f.start === insn ? f : undefined;
}

/** What relocation targets resolve to, by section index. */
export interface RelocationTargets {
  /** Executable sections by index. */
  exec: Map<number, ExecSection>;
  /** `.maps` / `maps` sections by index: map name by definition offset. */
  maps: Map<number, Map<number, string>>;
  /** Global data sections by index: the data map's name. */
  data: Map<number, string>;
  sections: ElfSection[];
}

interface Insn {
  code: number;
  src: number;
  imm: number;
}

function readInsn(buf: Buffer, index: number): Insn {
  const o = index * INSN_SIZE;
  return { code: buf[o], src: buf[o + 1] >> 4, imm: buf.readInt32LE(o + 4) };
}

/**
 * Turns the relocations of executable section `exec` into InsnRelocs of its
 * functions, then adds the bpf-to-bpf calls that need no relocation (calls
 * to a static function of the same section, encoded relative to the call).
 */
export function resolveRelocations(
  exec: ExecSection,
  relocations: ElfRelocation[],
  symbols: ElfSymbol[],
  targets: RelocationTargets,
): void {
  const secName = exec.section.name;
  const fail = (insn: number, msg: string): never => {
    throw new ElfError(`section ${secName}, instruction ${insn}: ${msg}`, { section: secName });
  };
  const byFunction = new Map<FunctionEntry, Map<number, InsnReloc>>();
  const add = (fn: FunctionEntry, r: InsnReloc, absInsn: number): void => {
    let m = byFunction.get(fn);
    if (!m) byFunction.set(fn, (m = new Map()));
    if (m.has(r.insn)) fail(absInsn, 'more than one relocation');
    m.set(r.insn, r);
  };
  const sectionName = (idx: number): string => targets.sections[idx]?.name ?? `#${idx}`;

  for (const rel of relocations) {
    if (rel.type === 0) continue; // R_BPF_NONE
    if (rel.offset % INSN_SIZE !== 0 || rel.offset >= exec.section.data.length) {
      throw new ElfError(`section ${secName}: relocation at byte ${rel.offset} is not at an instruction`, {
        section: secName,
      });
    }
    const abs = rel.offset / INSN_SIZE;
    const fn = functionAt(exec, abs);
    // Code outside every function (e.g. an overridden weak function) is never loaded.
    if (!fn) continue;
    const at = abs - fn.start;
    const insn = readInsn(fn.spec.instructions, at);
    const sym = symbols[rel.symbol];
    const symDesc = sym.name ? `symbol ${sym.name}` : `symbol #${sym.index}`;
    const isCall = insn.code === OP_CALL;
    if (!isCall && insn.code !== OP_LD_IMM64) {
      fail(abs, `relocation against ${symDesc} on an instruction (code 0x${insn.code.toString(16)}) that is neither a call nor ld_imm64`);
    }
    if (!isCall && at + 1 >= fn.end - fn.start) fail(abs, 'ld_imm64 is cut off by the end of its function');

    // Externs: kfuncs, __ksym and __kconfig variables.
    if (sym.shndx === SHN_UNDEF) {
      if (sym.index === 0 || sym.bind === STB.LOCAL || !sym.name) fail(abs, `relocation against undefined local ${symDesc}`);
      add(fn, { kind: 'extern', insn: at, name: sym.name, offset: isCall ? 0 : insn.imm, weak: sym.bind === STB.WEAK }, abs);
      continue;
    }
    if (sym.shndx >= SHN_LORESERVE) {
      fail(abs, `relocation against ${symDesc} in special section 0x${sym.shndx.toString(16)} (uninitialised global variable?)`);
    }

    if (isCall) {
      if (insn.src !== BPF_PSEUDO_CALL) fail(abs, `relocated call to ${symDesc} is not a bpf-to-bpf call (src_reg ${insn.src})`);
      const targetSec = targets.exec.get(sym.shndx);
      if (!targetSec) fail(abs, `call to ${symDesc} in non-executable section ${sectionName(sym.shndx)}`);
      if (sym.value % INSN_SIZE !== 0) fail(abs, `call to ${symDesc} at unaligned offset ${sym.value}`);
      // A function symbol names its target; a section symbol (static
      // functions) gives the section start, and the call's imm is the
      // target relative to the instruction after the call.
      const target = sym.type === STT.FUNC ? sym.value / INSN_SIZE : sym.value / INSN_SIZE + insn.imm + 1;
      const callee = functionStartingAt(targetSec!, target);
      if (!callee) fail(abs, `call target (instruction ${target} of ${sectionName(sym.shndx)}) is not the start of a function`);
      add(fn, { kind: 'call', insn: at, target: callee!.spec.key }, abs);
      continue;
    }

    // ld_imm64 with a relocation.
    const maps = targets.maps.get(sym.shndx);
    if (maps) {
      const off = sym.type === STT.SECTION ? sym.value + insn.imm : sym.value;
      const map = maps.get(off);
      if (map === undefined) fail(abs, `no map at offset ${off} of section ${sectionName(sym.shndx)}`);
      add(fn, { kind: 'map', insn: at, map: map! }, abs);
      continue;
    }
    const dataMap = targets.data.get(sym.shndx);
    if (dataMap !== undefined) {
      // The addend (e.g. the offset of a static variable from its section symbol) is in imm.
      const offset = sym.value + insn.imm;
      if (offset < 0 || offset > 0xffffffff) fail(abs, `offset ${offset} into ${dataMap} is out of range`);
      add(fn, { kind: 'mapValue', insn: at, map: dataMap, offset }, abs);
      continue;
    }
    const targetSec = targets.exec.get(sym.shndx);
    if (targetSec) {
      // Address of a function (bpf_loop callbacks etc.): global functions
      // carry their offset in the symbol, static ones (section symbol) in imm.
      const byteOff = sym.value + insn.imm;
      if (byteOff % INSN_SIZE !== 0) fail(abs, `function address ${byteOff} in ${sectionName(sym.shndx)} is not aligned`);
      const callee = functionStartingAt(targetSec, byteOff / INSN_SIZE);
      if (!callee) fail(abs, `function address ${byteOff} of ${sectionName(sym.shndx)} is not the start of a function`);
      add(fn, { kind: 'func', insn: at, target: callee!.spec.key }, abs);
      continue;
    }
    fail(abs, `relocation against ${symDesc} in section ${sectionName(sym.shndx)}, which is neither a map, global data nor code section`);
  }

  // Calls to static functions of the same section carry no relocation.
  for (const fn of exec.functions) {
    const insns = fn.spec.instructions;
    const count = fn.end - fn.start;
    const existing = byFunction.get(fn);
    for (let i = 0; i < count; i++) {
      const insn = readInsn(insns, i);
      if (insn.code === OP_LD_IMM64) {
        i++;
        continue;
      }
      if (insn.code !== OP_CALL || insn.src !== BPF_PSEUDO_CALL || existing?.has(i)) continue;
      const target = fn.start + i + insn.imm + 1;
      const callee = functionStartingAt(exec, target);
      if (!callee) fail(fn.start + i, `call target (instruction ${target}) is not the start of a function`);
      add(fn, { kind: 'call', insn: i, target: callee!.spec.key }, fn.start + i);
    }
  }

  for (const [fn, m] of byFunction) {
    fn.spec.relocations = [...m.values()].sort((a, b) => a.insn - b.insn);
  }
}

/** Distributes the section-relative .BTF.ext records of `exec` to its functions. */
export function splitBtfExt(exec: ExecSection, ext: BtfExt): void {
  const name = exec.section.name;
  const distribute = <T extends { insnOff: number }>(records: T[] | undefined, assign: (f: FunctionSpec, r: T[]) => void): void => {
    if (!records) return;
    const per = new Map<FunctionEntry, T[]>();
    for (const r of records) {
      const fn = functionAt(exec, r.insnOff);
      if (!fn) continue;
      let list = per.get(fn);
      if (!list) per.set(fn, (list = []));
      list.push({ ...r, insnOff: r.insnOff - fn.start });
    }
    for (const [fn, list] of per) assign(fn.spec, list.sort((a, b) => a.insnOff - b.insnOff));
  };
  distribute(ext.funcInfos.get(name), (f, r) => (f.funcInfos = r));
  distribute(ext.lineInfos.get(name), (f, r) => (f.lineInfos = r));
  distribute(ext.coreRelos.get(name), (f, r) => (f.coreRelos = r));
}
