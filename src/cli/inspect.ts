// `tsbpf inspect OBJECT.o [--disasm] [--btf] [--relocs] [--json]`: what an object holds, without loading
// it: sections, programs, maps, globals (initial values decoded through BTF), license; optionally the
// relocations and CO-RE records, a disassembly with source lines, the BTF types.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadCollectionSpec } from '../elf/index.js';
import { readElf, SHF, SHT } from '../elf/reader.js';
import type { CollectionSpec, FunctionSpec, InsnReloc, ProgramSpec } from '../elf/spec.js';
import { disassemble, formatInsn, type DisasmInsn, type RawInsn } from '../elf/disasm.js';
import type { Btf } from '../btf/btf.js';
import type { BtfType, CoreRelo } from '../btf/types.js';
import { CORE_RELO_KIND } from '../btf/types.js';
import { CORE_RELO_KIND_NAMES } from '../btf/core.js';
import { codecFor } from '../btf/codec.js';
import { cTypeName } from '../btf/names.js';
import { BPF_ATTACH_TYPE } from '../syscall/kernel-defs.generated.js';
import { programTypeName } from '../programs/program.js';
import { mapTypeName } from '../maps/map.js';

export const INSPECT_USAGE = `Usage: tsbpf inspect OBJECT.o [--disasm] [--btf] [--relocs] [--json]

Describe a BPF object without loading it: sections, programs, maps, global variables (initial values
decoded through BTF), license and kernel version.
  --relocs   relocations of every function and its CO-RE records (kind, type, access string)
  --disasm   disassemble every function, with source lines from .BTF.ext line_info interleaved
  --btf      list the object's BTF types
  --json     one JSON document instead of text
`;

const ATTACH_NAMES = new Map<number, string>(Object.entries(BPF_ATTACH_TYPE).map(([k, v]) => [v as number, k.toLowerCase()]));

/** JSON-friendly copy: bigints beyond 2^53 as strings, Buffers as hex. */
export function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonSafe(x)]));
  return v;
}

/** A value for a text line: like JSON but bigints as plain numbers. */
export function showValue(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : Buffer.isBuffer(x) ? x.toString('hex') : x))?.replace(/"(-?\d+)n"/g, '$1') ?? String(v);
}

/** The field an access string names, in source terms: `struct task_struct.thread_pid`, `enum e::A`. */
export function describeCoreRelo(btf: Btf | undefined, r: CoreRelo): string {
  const root = cTypeName(btf, r.typeId);
  if (!btf) return root;
  const idx = r.accessor.split(':').map(Number);
  if (r.kind === CORE_RELO_KIND.ENUMVAL_EXISTS || r.kind === CORE_RELO_KIND.ENUMVAL_VALUE) {
    const t = btf.resolve(r.typeId);
    const v = t.kind === 'enum' || t.kind === 'enum64' ? t.values[idx[0]] : undefined;
    return `${root}::${v?.name ?? idx[0]}`;
  }
  if (r.kind >= CORE_RELO_KIND.TYPE_ID_LOCAL && r.kind !== CORE_RELO_KIND.ENUMVAL_EXISTS) return root;
  let path = idx[0] ? `[${idx[0]}]` : '';
  let cur = r.typeId;
  for (const i of idx.slice(1)) {
    const t = btf.resolve(cur);
    if (t.kind === 'struct' || t.kind === 'union') {
      const m = t.members[i];
      if (!m) return `${root}${path}:${i}?`;
      path += m.name ? `.${m.name}` : `.<anon#${i}>`;
      cur = m.type;
    } else if (t.kind === 'array') {
      path += `[${i}]`;
      cur = t.type;
    } else {
      return `${root}${path}:${i}?`;
    }
  }
  return `${root}${path}`;
}

export interface InspectOptions {
  disasm?: boolean;
  btf?: boolean;
  relocs?: boolean;
}

function relocText(spec: CollectionSpec, r: InsnReloc): string {
  switch (r.kind) {
    case 'map':
      return `map ${r.map}`;
    case 'mapValue': {
      const v = variableAt(spec, r.map, r.offset);
      return `map value ${r.map}+${r.offset}${v ? ` (${v})` : ''}`;
    }
    case 'call':
      return `call ${spec.functions[r.target]?.name ?? r.target}`;
    case 'func':
      return `func ${spec.functions[r.target]?.name ?? r.target}`;
    case 'extern':
      return `extern ${r.name}${r.offset ? `+${r.offset}` : ''}${r.weak ? ' (weak)' : ''}`;
  }
}

function variableAt(spec: CollectionSpec, map: string, offset: number): string | undefined {
  for (const v of Object.values(spec.variables)) {
    if (v.map === map && offset >= v.offset && offset < v.offset + Math.max(v.size, 1)) return offset === v.offset ? v.name : `${v.name}+${offset - v.offset}`;
  }
  return undefined;
}

/** Disassembly of one function of an object, with its relocations named and line info interleaved. */
export function disassembleFunction(spec: CollectionSpec, fn: FunctionSpec): { lines: string[]; insns: DisasmInsn[] } {
  const byInsn = new Map<number, InsnReloc>();
  for (const r of fn.relocations) byInsn.set(r.insn, r);
  const insns = disassemble(fn.instructions, {
    imm64: (_raw: RawInsn, i: number) => {
      const r = byInsn.get(i);
      if (!r) return undefined;
      if (r.kind === 'map') return `map[${r.map}]`;
      if (r.kind === 'mapValue') {
        const v = variableAt(spec, r.map, r.offset);
        return `map[${r.map}]+${r.offset}${v ? ` <${v}>` : ''}`;
      }
      if (r.kind === 'func') return `func[${spec.functions[r.target]?.name ?? r.target}]`;
      if (r.kind === 'extern') return `extern[${r.name}]${r.offset ? `+${r.offset}` : ''}`;
      return undefined;
    },
    call: (raw: RawInsn, i: number) => {
      const r = byInsn.get(i);
      if (r?.kind === 'call') return `pc${raw.imm < 0 ? raw.imm : `+${raw.imm}`}#${spec.functions[r.target]?.name ?? r.target}`;
      if (r?.kind === 'extern') return `${r.name}#kfunc`;
      return undefined;
    },
  });
  const lineAt = new Map<number, (typeof fn.lineInfos)[number]>();
  for (const li of fn.lineInfos) lineAt.set(li.insnOff, li);
  const lines: string[] = [];
  for (const d of insns) {
    const li = lineAt.get(d.index);
    if (li && li.lineText.trim()) lines.push(`; ${li.lineText.trim()} @ ${li.fileName.split('/').pop()}:${li.line}:${li.column}`);
    lines.push(formatInsn(d) + (d.target !== undefined && d.code !== 0x85 && (d.code & 7) !== 0 ? `    ; -> ${d.target}` : ''));
  }
  return { lines, insns };
}

function btfTypeLine(btf: Btf, t: BtfType): string {
  const q = `'${t.name}'`;
  switch (t.kind) {
    case 'int':
      return `INT ${q} size=${t.size} bits=${t.bits}${t.signed ? ' signed' : ''}${t.char ? ' char' : ''}${t.bool ? ' bool' : ''}`;
    case 'ptr':
    case 'typedef':
    case 'const':
    case 'volatile':
    case 'restrict':
    case 'type_tag':
      return `${t.kind.toUpperCase()} ${q} type_id=${t.type}`;
    case 'array':
      return `ARRAY ${q} type_id=${t.type} index_type_id=${t.indexType} nr_elems=${t.nelems}`;
    case 'struct':
    case 'union':
      return `${t.kind.toUpperCase()} ${q} size=${t.size} vlen=${t.members.length}` +
        t.members.map((m) => `\n\t'${m.name}' type_id=${m.type} bits_offset=${m.bitOffset}${m.bitfieldSize ? ` bitfield_size=${m.bitfieldSize}` : ''}`).join('');
    case 'enum':
    case 'enum64':
      return `${t.kind.toUpperCase()} ${q} size=${t.size} vlen=${t.values.length}` + t.values.map((v) => `\n\t'${v.name}' val=${v.value}`).join('');
    case 'fwd':
      return `FWD ${q} fwd_kind=${t.fwdKind}`;
    case 'func':
      return `FUNC ${q} type_id=${t.type} linkage=${t.linkage}`;
    case 'func_proto':
      return `FUNC_PROTO ${q} ret_type_id=${t.returnType} vlen=${t.params.length}` + t.params.map((p) => `\n\t'${p.name}' type_id=${p.type}`).join('');
    case 'var':
      return `VAR ${q} type_id=${t.type} linkage=${t.linkage}`;
    case 'datasec':
      return `DATASEC ${q} size=${t.size} vlen=${t.vars.length}` + t.vars.map((v) => `\n\ttype_id=${v.type} offset=${v.offset} size=${v.size}`).join('');
    case 'float':
      return `FLOAT ${q} size=${t.size}`;
    case 'decl_tag':
      return `DECL_TAG ${q} type_id=${t.type} component_idx=${t.componentIdx}`;
    default:
      return `${String((t as BtfType).kind).toUpperCase()} ${q}`;
  }
}

function sectionTypeName(type: number): string {
  for (const [k, v] of Object.entries(SHT)) if (v === type) return k;
  return `0x${type.toString(16)}`;
}

function sectionFlags(flags: number): string {
  return `${flags & SHF.WRITE ? 'W' : ''}${flags & SHF.ALLOC ? 'A' : ''}${flags & SHF.EXECINSTR ? 'X' : ''}`;
}

/** Everything `tsbpf inspect` reports, as data (what --json prints). */
export function inspectObject(path: string, o: InspectOptions = {}): Record<string, unknown> {
  return describeSpec(loadCollectionSpec(path), readFileSync(path), o);
}

/** inspectObject() of a spec already parsed from `raw`. */
export function describeSpec(spec: CollectionSpec, raw: Buffer, o: InspectOptions = {}): Record<string, unknown> {
  const btf = spec.btf;
  const sections = readElf(raw).sections.filter((s) => s.index > 0).map((s) => ({
    index: s.index,
    name: s.name,
    type: sectionTypeName(s.type),
    flags: sectionFlags(s.flags),
    size: s.size,
  }));
  const programs = Object.values(spec.programs).map((p: ProgramSpec) => ({
    name: p.name,
    section: p.section,
    type: programTypeName(p.type).toLowerCase(),
    expectedAttachType: p.expectedAttachType ? (ATTACH_NAMES.get(p.expectedAttachType) ?? String(p.expectedAttachType)) : '',
    attachTo: p.attachTo,
    insns: p.instructions.length / 8,
    flags: p.flags,
    autoload: p.autoload,
    global: p.global,
    calls: [...new Set(p.relocations.filter((r) => r.kind === 'call' || r.kind === 'func').map((r) => spec.functions[(r as { target: string }).target]?.name ?? ''))],
  }));
  const programKeys = new Set(Object.values(spec.programs).map((p) => p.key));
  const subprograms = Object.values(spec.functions).filter((f) => !programKeys.has(f.key)).map((f) => ({
    name: f.name, section: f.section, insns: f.instructions.length / 8, global: f.global,
  }));
  const maps = Object.values(spec.maps).map((m) => ({
    name: m.name,
    type: mapTypeName(m.type).toLowerCase(),
    keySize: m.keySize,
    valueSize: m.valueSize,
    keyType: cTypeName(btf, m.keyType) || undefined,
    valueType: cTypeName(btf, m.valueType) || undefined,
    maxEntries: m.maxEntries,
    flags: m.flags,
    pinning: m.pinning,
    section: m.section,
    origin: m.origin,
    ...(m.innerMap ? { innerMap: { type: mapTypeName(m.innerMap.type).toLowerCase(), keySize: m.innerMap.keySize, valueSize: m.innerMap.valueSize } } : {}),
  }));
  const globals = Object.values(spec.variables).map((v) => {
    const map = spec.maps[v.map];
    const data = map?.contents.find((e) => Buffer.isBuffer(e.value))?.value as Buffer | undefined;
    let value: unknown;
    if (data && v.offset + v.size <= data.length) {
      const bytes = data.subarray(v.offset, v.offset + v.size);
      try {
        value = btf && v.type ? codecFor(btf, v.type).decode(bytes, 0, { enumNames: true }) : Buffer.from(bytes);
      } catch {
        value = Buffer.from(bytes);
      }
    } else if (map && map.section.startsWith('.bss')) {
      value = 0;
    }
    return { name: v.name, section: v.map, offset: v.offset, size: v.size, type: cTypeName(btf, v.type), readonly: v.readonly, global: v.global, value };
  });
  const out: Record<string, unknown> = {
    object: spec.objectName,
    license: spec.license,
    kernelVersion: spec.kernelVersion,
    btf: btf ? { types: btf.length - 1 } : undefined,
    sections,
    programs,
    subprograms,
    maps,
    globals,
  };
  const functions = Object.values(spec.functions);
  if (o.relocs) {
    out.relocations = functions.map((f) => ({
      function: f.name,
      section: f.section,
      relocations: f.relocations.map((r) => ({ insn: r.insn, kind: r.kind, target: relocText(spec, r) })),
      core: f.coreRelos.map((r) => ({
        insn: r.insnOff,
        kind: CORE_RELO_KIND_NAMES[r.kind] ?? `kind ${r.kind}`,
        type: cTypeName(btf, r.typeId),
        typeId: r.typeId,
        access: r.accessor,
        field: describeCoreRelo(btf, r),
      })),
    }));
  }
  if (o.disasm) {
    out.disasm = functions.map((f) => ({ function: f.name, section: f.section, lines: disassembleFunction(spec, f).lines }));
  }
  if (o.btf && btf) {
    const types: string[] = [];
    for (let id = 1; id < btf.length; id++) types.push(`[${id}] ${btfTypeLine(btf, btf.type(id))}`);
    out.btfTypes = types;
  }
  return out;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : (c ?? '').padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

type Row = Record<string, unknown>;

/** The text form of an inspectObject() report. */
export function formatInspect(path: string, r: Record<string, unknown>): string {
  const lines: string[] = [];
  const btf = r.btf as { types: number } | undefined;
  lines.push(`${path}: object "${r.object}", license "${r.license}"${r.kernelVersion ? `, kernel version ${r.kernelVersion}` : ''}, ${btf ? `BTF with ${btf.types} types` : 'no BTF'}`);
  lines.push('', 'SECTIONS');
  lines.push(table([['IDX', 'NAME', 'TYPE', 'FLAGS', 'SIZE'], ...(r.sections as Row[]).map((s) => [String(s.index), String(s.name), String(s.type), String(s.flags), String(s.size)])]));
  lines.push('', 'PROGRAMS');
  lines.push(table([['NAME', 'SECTION', 'TYPE', 'ATTACH TYPE', 'TARGET', 'INSNS', 'CALLS'], ...(r.programs as Row[]).map((p) => [
    String(p.name) + (p.autoload ? '' : ' (no autoload)'), String(p.section), String(p.type), String(p.expectedAttachType || '-'), String(p.attachTo || '-'), String(p.insns), (p.calls as string[]).join(',') || '-',
  ])]));
  if ((r.subprograms as Row[]).length) {
    lines.push('', 'SUBPROGRAMS');
    lines.push(table([['NAME', 'SECTION', 'INSNS', 'LINKAGE'], ...(r.subprograms as Row[]).map((f) => [String(f.name), String(f.section), String(f.insns), f.global ? 'global' : 'static'])]));
  }
  lines.push('', 'MAPS');
  lines.push(table([['NAME', 'TYPE', 'KEY', 'VALUE', 'MAX ENTRIES', 'FLAGS', 'PINNING'], ...(r.maps as Row[]).map((m) => [
    String(m.name), String(m.type), `${m.keySize}B${m.keyType ? ` (${m.keyType})` : ''}`, `${m.valueSize}B${m.valueType ? ` (${m.valueType})` : ''}`,
    String(m.maxEntries), `0x${(m.flags as number).toString(16)}`, String(m.pinning),
  ])]));
  const globals = r.globals as Row[];
  if (globals.length) {
    lines.push('', 'GLOBALS');
    lines.push(table([['NAME', 'SECTION', 'OFFSET', 'TYPE', 'VALUE'], ...globals.map((g) => [
      String(g.name), String(g.section), String(g.offset), `${g.type || `${g.size}B`}${g.readonly ? ' (const)' : ''}`, g.value === undefined ? '-' : showValue(g.value),
    ])]));
  }
  if (r.relocations) {
    lines.push('', 'RELOCATIONS');
    for (const f of r.relocations as Row[]) {
      const rel = f.relocations as Row[];
      const core = f.core as Row[];
      if (!rel.length && !core.length) continue;
      lines.push(`${f.function} (${f.section}):`);
      for (const x of rel) lines.push(`  insn ${String(x.insn).padStart(4)}  ${String(x.kind).padEnd(8)}  ${x.target}`);
      for (const x of core) lines.push(`  insn ${String(x.insn).padStart(4)}  core      ${String(x.kind).padEnd(18)} ${String(x.type).padEnd(24)} ${String(x.access).padEnd(10)} ${x.field}`);
    }
  }
  if (r.disasm) {
    for (const f of r.disasm as Row[]) {
      lines.push('', `DISASSEMBLY ${f.function} (${f.section}):`);
      lines.push(...(f.lines as string[]));
    }
  }
  if (r.btfTypes) {
    lines.push('', 'BTF');
    lines.push(...(r.btfTypes as string[]));
  }
  return lines.join('\n') + '\n';
}

function write(s: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(s, (e) => (e ? reject(e) : resolve())));
}

export async function inspectCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      disasm: { type: 'boolean' },
      btf: { type: 'boolean' },
      relocs: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    await write(INSPECT_USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(INSPECT_USAGE);
    return 2;
  }
  const path = positionals[0];
  const report = inspectObject(path, { disasm: values.disasm, btf: values.btf, relocs: values.relocs });
  await write(values.json ? JSON.stringify(jsonSafe(report), null, 2) + '\n' : formatInspect(path, report));
  return 0;
}
