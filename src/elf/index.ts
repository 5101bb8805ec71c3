// loadCollectionSpec: a BPF ELF object → CollectionSpec (plain data, no kernel access).

import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Btf } from '../btf/btf.js';
import { parseBtfExt } from '../btf/ext.js';
import type { BtfDatasec, BtfExt } from '../btf/types.js';
import { ElfError, TsbpfError, describeArgument } from '../errors.js';
import type { CollectionSpec, FunctionSpec, MapSpec, ProgramSpec, VariableSpec } from './spec.js';
import { readElf, SHF, SHT, type ElfSection } from './reader.js';
import { isExported, readRelocations, readSymbolTable, STB, STT, type ElfSymbol } from './symbols.js';
import {
  dataMapSpec,
  dataSectionKind,
  indexKey,
  parseBtfMaps,
  parseLegacyMaps,
  sortContents,
  type MapPlacement,
  type ZeroFillBudget,
} from './maps.js';
import {
  functionAt,
  INSN_SIZE,
  resolveRelocations,
  splitBtfExt,
  splitFunctions,
  type ExecSection,
  type RelocationTargets,
} from './programs.js';

export type * from './spec.js';
export { classifySection, BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS, type SectionInfo } from './section-types.js';
export { internalMapName, BPF_F_MMAPABLE, BPF_F_RDONLY_PROG } from './maps.js';
export { getVariable, setVariable, type VariableValue } from './variables.js';

export interface LoadCollectionSpecOptions {
  /**
   * Object name, used for the kernel names of global data maps ("<name>.bss").
   * Default: the file's basename up to its first '.' for a path, "obj" for a Buffer.
   */
  name?: string;
}

const BTF_MAPS_SECTION = '.maps';
const LEGACY_MAPS_SECTION = 'maps';

/** Object name like libbpf derives it: the basename up to its first dot. */
function objectNameOf(path: string): string {
  const base = basename(path);
  const dot = base.indexOf('.');
  const name = dot < 0 ? base : base.slice(0, dot);
  return name || 'obj';
}

/** Runs a parser of another layer, turning unexpected exceptions into ElfError. */
function guarded<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TsbpfError) throw err;
    throw new ElfError(`malformed ${what}: ${(err as Error)?.message ?? String(err)}`, { section: what, cause: err });
  }
}

/**
 * Parses a BPF ELF object (as clang -target bpf writes it) into a CollectionSpec.
 * Throws ElfError (or BtfError for broken BTF) for malformed input; never touches the kernel.
 */
export function loadCollectionSpec(input: string | Buffer | Uint8Array, options: LoadCollectionSpecOptions = {}): CollectionSpec {
  let buf: Buffer;
  let objectName: string;
  if (typeof input === 'string') {
    buf = readObjectFile(input);
    objectName = options.name ?? objectNameOf(input);
  } else if (input instanceof Uint8Array) {
    buf = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    objectName = options.name ?? 'obj';
  } else {
    throw new TypeError(`loadCollectionSpec: input must be a path or a Buffer with the object's bytes, got ${describeArgument(input)}`);
  }
  return parseObject(buf, objectName, typeof input === 'string' ? input : `object "${objectName}"`);
}

/** The bytes of an object file; a device, FIFO or directory (`/dev/zero` never ends) is refused first. */
function readObjectFile(path: string): Buffer {
  const st = statSync(path); // a missing file stays Node's ENOENT error, which names the path
  if (!st.isFile()) {
    const kind = st.isDirectory() ? 'a directory' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device'
      : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'not a regular file';
    throw new ElfError(`${path}: is ${kind}, not an object file; pass the path of a .o built with clang -target bpf -c`);
  }
  if (st.size > MAX_OBJECT_BYTES) {
    throw new ElfError(`${path}: ${st.size} bytes is too large for a BPF object (limit ${MAX_OBJECT_BYTES} bytes)`);
  }
  return readFileSync(path);
}

/** Node's Buffer limit is 4 GiB; no BPF object comes near 1 GiB. */
const MAX_OBJECT_BYTES = 1 << 30;

function parseObject(buf: Buffer, objectName: string, label: string): CollectionSpec {
  let sections: ElfSection[];
  try {
    ({ sections } = readElf(buf));
  } catch (e) {
    // The container checks (magic, class, byte order, machine, type...) say nothing of which file: add it.
    if (e instanceof ElfError) throw new ElfError(`${label}: ${e.message}`, { section: e.section, cause: e });
    throw e;
  }
  const { symbols } = readSymbolTable(sections);
  // Symbols grouped by section, so that per-section work stays linear in the file size.
  const bySection = new Map<number, ElfSymbol[]>();
  for (const sym of symbols) {
    let list = bySection.get(sym.shndx);
    if (!list) bySection.set(sym.shndx, (list = []));
    list.push(sym);
  }
  const symbolsIn = (idx: number): ElfSymbol[] => bySection.get(idx) ?? [];

  const byName = new Map<string, ElfSection>();
  for (const s of sections) if (s.index !== 0 && !byName.has(s.name)) byName.set(s.name, s);

  const license = readLicense(byName.get('license'));
  const kernelVersion = readKernelVersion(byName.get('version'));

  // BTF and its program metadata.
  let btf: Btf | undefined;
  let ext: BtfExt | undefined;
  const btfSec = byName.get('.BTF');
  if (btfSec && btfSec.type === SHT.PROGBITS) {
    const parsed = guarded('.BTF', () => Btf.parse(Buffer.from(btfSec.data)));
    const extSec = byName.get('.BTF.ext');
    if (extSec && extSec.type === SHT.PROGBITS) {
      ext = guarded('.BTF.ext', () => parseBtfExt(Buffer.from(extSec.data), parsed));
    }
    fixupDatasecs(parsed, byName, symbols);
    btf = parsed;
  }

  // Maps, in section order then offset order.
  const maps: Record<string, MapSpec> = {};
  const addMap = (m: MapSpec): void => {
    if (Object.prototype.hasOwnProperty.call(maps, m.name)) {
      throw new ElfError(`two maps are named ${m.name}`, { section: m.section });
    }
    maps[m.name] = m;
  };
  const targets: RelocationTargets = { exec: new Map(), maps: new Map(), data: new Map(), sections };
  let btfMapsSection: ElfSection | undefined;
  let btfMapPlacements: MapPlacement[] = [];
  const budget: ZeroFillBudget = { used: 0 };
  const dataSections: ElfSection[] = [];

  for (const sec of sections) {
    if (sec.index === 0) continue;
    if (sec.name === BTF_MAPS_SECTION && (sec.type === SHT.PROGBITS || sec.type === SHT.NOBITS)) {
      if (btfMapsSection) throw new ElfError('more than one .maps section', { section: sec.name });
      if (!btf) throw new ElfError('section .maps needs BTF to describe its maps, but the object has no .BTF', { section: sec.name });
      const named = new Map<string, ElfSymbol>();
      for (const s of symbolsIn(sec.index)) {
        if (s.name && s.type !== STT.SECTION && !named.has(s.name)) named.set(s.name, s);
      }
      const { specs, placements } = parseBtfMaps(sec, btf, named);
      specs.forEach(addMap);
      btfMapsSection = sec;
      btfMapPlacements = placements;
      targets.maps.set(sec.index, placementIndex(sec, placements));
    } else if (sec.name === LEGACY_MAPS_SECTION && (sec.type === SHT.PROGBITS || sec.type === SHT.NOBITS)) {
      const { specs, placements } = parseLegacyMaps(sec, symbolsIn(sec.index));
      specs.forEach(addMap);
      targets.maps.set(sec.index, placementIndex(sec, placements));
    } else if ((sec.flags & SHF.EXECINSTR) === 0 && dataSectionKind(sec) && sec.size > 0) {
      if (Object.prototype.hasOwnProperty.call(maps, sec.name)) {
        throw new ElfError(`two maps are named ${sec.name}`, { section: sec.name });
      }
      addMap(dataMapSpec(sec, objectName, btf, budget));
      targets.data.set(sec.index, sec.name);
      dataSections.push(sec);
    }
  }

  // Functions.
  const functions: Record<string, FunctionSpec> = {};
  const programs: Record<string, ProgramSpec> = {};
  const execSections: ExecSection[] = [];
  for (const sec of sections) {
    if (sec.type !== SHT.PROGBITS || (sec.flags & SHF.EXECINSTR) === 0 || sec.size === 0) continue;
    const exec = splitFunctions(sec, symbolsIn(sec.index), license, kernelVersion);
    execSections.push(exec);
    targets.exec.set(sec.index, exec);
    for (const fn of exec.functions) {
      if (Object.prototype.hasOwnProperty.call(functions, fn.spec.key)) {
        throw new ElfError(`two functions are named ${fn.spec.key}`, { section: sec.name });
      }
      functions[fn.spec.key] = fn.spec;
      if (fn.isProgram) {
        if (Object.prototype.hasOwnProperty.call(programs, fn.spec.name)) {
          throw new ElfError(`two programs are named ${fn.spec.name}`, { section: sec.name });
        }
        programs[fn.spec.name] = fn.spec as ProgramSpec;
      }
    }
  }

  // Hidden global subprograms are verified like static ones: mark their BTF
  // FUNC static, as libbpf does.
  if (btf) {
    for (const exec of execSections) {
      for (const fn of exec.functions) {
        if (fn.isProgram || fn.symbol.bind === STB.LOCAL || fn.spec.global) continue;
        for (const t of btf.typesByName(fn.spec.name)) {
          if (t.kind === 'func' && t.linkage === 'global') btf.setType({ ...t, linkage: 'static' });
        }
      }
    }
  }

  // Relocations of code sections, then .BTF.ext records.
  const relocsFor = new Map<number, ElfSection[]>();
  for (const sec of sections) {
    if (sec.type !== SHT.REL) continue;
    if (sec.info <= 0 || sec.info >= sections.length) {
      throw new ElfError(`relocation section ${sec.name} applies to invalid section ${sec.info}`, { section: sec.name });
    }
    let list = relocsFor.get(sec.info);
    if (!list) relocsFor.set(sec.info, (list = []));
    list.push(sec);
  }
  for (const exec of execSections) {
    const rels = (relocsFor.get(exec.section.index) ?? []).flatMap((r) => readRelocations(r, symbols.length));
    resolveRelocations(exec, rels, symbols, targets);
    if (ext) splitBtfExt(exec, ext);
  }

  // Initial slots of map-in-maps and program arrays (`.values = { ... }`).
  if (btfMapsSection) {
    const rels = (relocsFor.get(btfMapsSection.index) ?? []).flatMap((r) => readRelocations(r, symbols.length));
    applyMapSlotRelocations(btfMapsSection, btfMapPlacements, rels, symbols, maps, targets);
  }

  const variables = collectVariables(dataSections, btf, symbolsIn, maps);

  const spec: CollectionSpec = {
    programs,
    maps,
    variables,
    functions,
    license,
    kernelVersion,
    objectName,
  };
  if (btf) spec.btf = btf;
  return spec;
}

function placementIndex(sec: ElfSection, placements: MapPlacement[]): Map<number, string> {
  const m = new Map<number, string>();
  const sorted = [...placements].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    if (prev.offset + prev.size > sorted[i].offset) {
      throw new ElfError(`map definitions ${prev.name} and ${sorted[i].name} overlap in ${sec.name}`, { section: sec.name });
    }
  }
  for (const p of placements) {
    if (m.has(p.offset)) {
      throw new ElfError(`maps ${m.get(p.offset)} and ${p.name} are both at offset ${p.offset} of ${sec.name}`, {
        section: sec.name,
      });
    }
    m.set(p.offset, p.name);
  }
  return m;
}

function readLicense(sec: ElfSection | undefined): string {
  if (!sec || sec.type !== SHT.PROGBITS) return '';
  const nul = sec.data.indexOf(0);
  return sec.data.toString('utf8', 0, nul < 0 ? sec.data.length : nul);
}

function readKernelVersion(sec: ElfSection | undefined): number {
  if (!sec || sec.type !== SHT.PROGBITS) return 0;
  if (sec.data.length < 4) {
    throw new ElfError(`section version is ${sec.data.length} bytes, expected 4`, { section: 'version' });
  }
  return sec.data.readUInt32LE(0);
}

/**
 * Clang leaves the size of every DATASEC and the offsets of its global
 * variables at 0; the kernel needs the real ones. Take the size from the ELF
 * section and each variable's offset from its ELF symbol, then sort the
 * entries by offset. `.kconfig` and `.ksyms` describe externs and have no
 * section: they are only sorted.
 */
function fixupDatasecs(btf: Btf, byName: Map<string, ElfSection>, symbols: ElfSymbol[]): void {
  const symbolKey = (shndx: number, name: string): string => `${shndx}\u0000${name}`;
  const named = new Map<string, ElfSymbol>();
  for (const s of symbols) {
    if (!s.name || s.type === STT.SECTION || s.type === STT.FILE) continue;
    const k = symbolKey(s.shndx, s.name);
    if (!named.has(k)) named.set(k, s);
  }
  const datasecs: BtfDatasec[] = [];
  for (const t of btf.types()) if (t.kind === 'datasec') datasecs.push(t);

  for (const t of datasecs) {
    const sec = t.name === '.kconfig' || t.name === '.ksyms' ? undefined : byName.get(t.name);
    let size = t.size;
    let vars = t.vars;
    if (sec && sec.index !== 0) {
      if (!Number.isSafeInteger(sec.size) || sec.size > 0xffffffff) {
        throw new ElfError(`section ${sec.name} is too large for BTF`, { section: sec.name });
      }
      size = sec.size;
      const fixOffsets = t.size === 0;
      vars = t.vars.map((vsi) => {
        const v = btf.type(vsi.type);
        // Extern declarations have no storage here (they need static linking first).
        if (v.kind !== 'var' || v.linkage === 'extern') return vsi;
        const sym = named.get(symbolKey(sec.index, v.name));
        if (sym) {
          // A global with hidden visibility is static to the outside world (libbpf does the same).
          if (v.linkage === 'global' && !isExported(sym) && sym.bind !== STB.LOCAL) {
            btf.setType({ ...v, linkage: 'static' });
          }
          // Clang leaves DATASEC sizes and offsets at 0; the BPF static linker fills them in. Only
          // fix what clang left: in a linked object two statics may share a name, and the symbol
          // found by name would be the wrong one.
          if (!fixOffsets || sym.value === vsi.offset) return vsi;
          return { ...vsi, offset: sym.value };
        }
        if (fixOffsets && v.linkage !== 'static') {
          throw new ElfError(`variable ${v.name} of ${t.name} has no ELF symbol to give its offset`, { section: t.name });
        }
        return vsi;
      });
    }
    const sorted = vars
      .map((v, i) => ({ v, i }))
      .sort((a, b) => a.v.offset - b.v.offset || a.i - b.i)
      .map((e) => e.v);
    const changed = size !== t.size || sorted.some((v, i) => v !== t.vars[i]);
    if (changed) btf.setType({ ...t, size, vars: sorted });
  }
}

/** Fills `contents` of program arrays and map-in-maps from the relocations of `.maps`. */
function applyMapSlotRelocations(
  sec: ElfSection,
  placements: MapPlacement[],
  rels: ReturnType<typeof readRelocations>,
  symbols: ElfSymbol[],
  maps: Record<string, MapSpec>,
  targets: RelocationTargets,
): void {
  const fail = (msg: string): never => {
    throw new ElfError(`${sec.name}: ${msg}`, { section: sec.name });
  };
  const slots = new Map<string, Map<number, MapSpec['contents'][number]>>();
  const mapsByOffset = targets.maps.get(sec.index)!;
  // Definitions don't overlap (checked by placementIndex): binary search by offset.
  const sorted = [...placements].sort((a, b) => a.offset - b.offset);
  const containing = (off: number): MapPlacement | undefined => {
    let lo = 0;
    let hi = sorted.length - 1;
    let found: MapPlacement | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid].offset <= off) {
        found = sorted[mid];
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found && off + 8 <= found.offset + found.size ? found : undefined;
  };
  for (const rel of rels) {
    if (rel.type === 0) continue;
    const p = containing(rel.offset);
    if (!p) fail(`relocation at byte ${rel.offset} is not inside a map definition`);
    const place = p!;
    if (place.valuesOffset === undefined || place.valuesKind === undefined) {
      fail(`map ${place.name} has a relocation at byte ${rel.offset} but declares no 'values'`);
    }
    const rel0 = rel.offset - place.offset - place.valuesOffset!;
    if (rel0 < 0 || rel0 % 8 !== 0) fail(`map ${place.name}: relocation at byte ${rel.offset} is not a 'values' slot`);
    const index = rel0 / 8;
    if (index > 0xffffffff) fail(`map ${place.name}: slot ${index} is out of range`);
    const sym = symbols[rel.symbol];
    // For a section symbol the target offset is the addend stored in the slot itself.
    let addend = 0;
    if (sym.type === STT.SECTION) {
      if (rel.offset + 8 > sec.data.length) fail(`map ${place.name}: slot ${index} lies outside the section data`);
      const a = sec.data.readBigInt64LE(rel.offset);
      if (a < 0n || a > 0xffffffffn) fail(`map ${place.name}: slot ${index} has addend ${a}`);
      addend = Number(a);
    }
    let value: { map: string } | { program: string };
    if (place.valuesKind === 'maps') {
      if (sym.shndx !== sec.index) fail(`map ${place.name}: slot ${index} refers to ${sym.name || 'a symbol'} outside ${sec.name}`);
      const target = mapsByOffset.get(sym.value + addend);
      if (target === undefined) fail(`map ${place.name}: slot ${index} refers to no map`);
      value = { map: target! };
    } else {
      const exec = targets.exec.get(sym.shndx);
      const off = sym.value + addend;
      if (!exec || off % INSN_SIZE !== 0) fail(`map ${place.name}: slot ${index} refers to ${sym.name || 'a symbol'}, which is not a program`);
      const fn = functionAt(exec!, off / INSN_SIZE);
      if (!fn || fn.start !== off / INSN_SIZE || !fn.isProgram) {
        fail(`map ${place.name}: slot ${index} refers to ${sym.name || 'a symbol'}, which is not a program`);
      }
      value = { program: fn!.spec.name };
    }
    let m = slots.get(place.name);
    if (!m) slots.set(place.name, (m = new Map()));
    if (m.has(index)) fail(`map ${place.name}: slot ${index} is set twice`);
    m.set(index, { key: indexKey(index), value });
  }
  for (const [name, m] of slots) {
    const spec = maps[name];
    if (spec.maxEntries !== 0) {
      for (const i of m.keys()) {
        if (i >= spec.maxEntries) fail(`map ${name}: slot ${i} is beyond max_entries ${spec.maxEntries}`);
      }
    }
    spec.contents = sortContents([...m.values()]);
  }
}

/** Variables of the global data sections: from BTF when it describes the section, else from symbols. */
function collectVariables(
  dataSections: ElfSection[],
  btf: Btf | undefined,
  symbolsIn: (section: number) => ElfSymbol[],
  maps: Record<string, MapSpec>,
): Record<string, VariableSpec> {
  const variables: Record<string, VariableSpec> = {};
  const add = (v: VariableSpec): void => {
    // Names are unique in one compilation unit; keep the first if a linked object repeats one.
    if (!Object.prototype.hasOwnProperty.call(variables, v.name)) variables[v.name] = v;
  };
  for (const sec of dataSections) {
    const map = maps[sec.name];
    const readonly = dataSectionKind(sec) === 'rodata';
    const datasec = map?.valueType !== undefined ? btf?.type(map.valueType) : undefined;
    if (datasec && datasec.kind === 'datasec') {
      for (const vsi of datasec.vars) {
        const v = btf!.type(vsi.type);
        if (v.kind !== 'var' || v.linkage === 'extern') continue;
        if (vsi.offset + vsi.size > sec.size) {
          throw new ElfError(`variable ${v.name} (${vsi.size} bytes at ${vsi.offset}) lies outside ${sec.name}`, {
            section: sec.name,
          });
        }
        add({
          name: v.name,
          map: sec.name,
          offset: vsi.offset,
          size: vsi.size,
          type: v.type,
          readonly,
          global: v.linkage !== 'static',
        });
      }
    } else {
      const syms = symbolsIn(sec.index)
        .filter((s) => s.type === STT.OBJECT && s.name)
        .sort((a, b) => a.value - b.value || a.index - b.index);
      for (const s of syms) {
        if (s.value + s.size > sec.size) {
          throw new ElfError(`variable ${s.name} (${s.size} bytes at ${s.value}) lies outside ${sec.name}`, {
            section: sec.name,
          });
        }
        add({
          name: s.name,
          map: sec.name,
          offset: s.value,
          size: s.size,
          type: 0,
          readonly,
          global: isExported(s),
        });
      }
    }
  }
  return variables;
}
