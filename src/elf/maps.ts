// Map specs from the three places a BPF object defines maps:
//  - BTF-defined maps: variables of section ".maps", described by the BTF of
//    their (anonymous) struct type, one member per property;
//  - legacy maps: `struct bpf_map_def` records in section "maps";
//  - global data: .data*, .rodata*, .bss* sections, each one single-element
//    array whose value is the whole section.

import type { Btf } from '../btf/btf.js';
import type { BtfMember, BtfType } from '../btf/types.js';
import { ElfError } from '../errors.js';
import { BPF_MAP_TYPE } from '../syscall/kernel-defs.generated.js';
import type { MapEntrySpec, MapSpec } from './spec.js';
import { SHT, type ElfSection } from './reader.js';
import { STT, type ElfSymbol } from './symbols.js';

/** BPF_F_RDONLY_PROG: the program may only read the map (include/uapi/linux/bpf.h, a #define). */
export const BPF_F_RDONLY_PROG = 1 << 7;
/** BPF_F_MMAPABLE: the array map can be mmap()ed (include/uapi/linux/bpf.h). */
export const BPF_F_MMAPABLE = 1 << 10;

/** Kernel limit for object names: 16 bytes with the terminating NUL. */
const OBJ_NAME_MAX = 15;
/** Size of the fields of `struct bpf_map_def` we read (type, key_size, value_size, max_entries, map_flags). */
const LEGACY_DEF_SIZE = 20;
/** Largest global data section we materialise (SHT_NOBITS has no bytes in the file to bound it). */
const MAX_DATA_SECTION = 64 << 20;
/** Total budget for zero-filled .bss-like contents of one object. */
const MAX_ZERO_FILL_TOTAL = 256 << 20;
/** `pinning` values of BTF map definitions (libbpf's enum libbpf_pin_type). */
const PIN_NONE = 0;
const PIN_BY_NAME = 1;

/** Where a map definition lives in its ELF section, to resolve references to it. */
export interface MapPlacement {
  name: string;
  /** Byte offset of the definition in its section. */
  offset: number;
  /** Bytes it covers (for BTF maps with `.values`, the initialised slots too). */
  size: number;
  /** For BTF maps declaring `values`: byte offset of that member inside the definition. */
  valuesOffset?: number;
  /** For BTF maps declaring `values`: what the slots hold. */
  valuesKind?: 'maps' | 'programs';
}

/** Replaces characters the kernel rejects in object names and truncates to 15 characters. */
export function kernelObjectName(name: string): string {
  return name.slice(0, OBJ_NAME_MAX).replace(/[^A-Za-z0-9_.]/g, '_');
}

/**
 * Kernel name of a global data map, chosen the way libbpf does so that tools
 * show the same names: for ".data", ".bss", ".rodata" (one dot) a prefix of the
 * object name followed by the section name, where the section name gets at
 * least 7 of the 15 characters (so the prefix is at most 8); for custom
 * sections like ".data.custom" (a second dot) the section name alone. At most
 * 15 characters, anything outside [A-Za-z0-9_.] replaced by '_'.
 */
export function internalMapName(objectName: string, sectionName: string): string {
  const suffixLen = Math.min(Math.max(7, sectionName.length), OBJ_NAME_MAX);
  const custom = sectionName.indexOf('.', 1) >= 0;
  const prefixLen = custom ? 0 : Math.min(OBJ_NAME_MAX - suffixLen, objectName.length);
  return (objectName.slice(0, prefixLen) + sectionName.slice(0, suffixLen)).replace(/[^A-Za-z0-9_.]/g, '_');
}

/** Kind of a global data section by name (libbpf's rules), or undefined when it is not one. */
export function dataSectionKind(section: ElfSection): 'data' | 'rodata' | 'bss' | undefined {
  if (section.type !== SHT.PROGBITS && section.type !== SHT.NOBITS) return undefined;
  const n = section.name;
  const is = (base: string): boolean => n === base || n.startsWith(base + '.');
  if (is('.rodata')) return 'rodata';
  if (is('.data')) return 'data';
  if (is('.bss')) return 'bss';
  return undefined;
}

/** Running total of zero-filled bytes, shared by the data sections of one object. */
export interface ZeroFillBudget {
  used: number;
}

/** The map spec of a global data section. */
export function dataMapSpec(
  section: ElfSection,
  objectName: string,
  btf: Btf | undefined,
  budget: ZeroFillBudget,
): MapSpec {
  const kind = dataSectionKind(section)!;
  const size = section.size;
  if (!Number.isSafeInteger(size) || size > MAX_DATA_SECTION) {
    throw new ElfError(`section ${section.name}: ${size} bytes of global data is more than the supported ${MAX_DATA_SECTION}`, {
      section: section.name,
    });
  }
  let value: Buffer;
  if (section.type === SHT.NOBITS) {
    budget.used += size;
    if (budget.used > MAX_ZERO_FILL_TOTAL) {
      throw new ElfError(`object declares more than ${MAX_ZERO_FILL_TOTAL} bytes of zero-initialised data`, {
        section: section.name,
      });
    }
    value = Buffer.alloc(size);
  } else {
    value = Buffer.from(section.data);
  }
  const readonly = kind === 'rodata';
  const spec: MapSpec = {
    name: section.name,
    kernelName: internalMapName(objectName, section.name),
    type: BPF_MAP_TYPE.ARRAY,
    keySize: 4,
    valueSize: size,
    maxEntries: 1,
    flags: (readonly ? BPF_F_RDONLY_PROG : 0) | BPF_F_MMAPABLE,
    pinning: 'none',
    contents: [{ key: Buffer.alloc(4), value }],
    freeze: readonly,
    origin: 'data',
    section: section.name,
  };
  const datasec = btf?.tryFindType(section.name, 'datasec');
  if (datasec) spec.valueType = datasec.id;
  return spec;
}

/** Legacy `struct bpf_map_def` maps of section "maps", one per symbol, in offset order; `symbols` are those of this section. */
export function parseLegacyMaps(
  section: ElfSection,
  symbols: ElfSymbol[],
): { specs: MapSpec[]; placements: MapPlacement[] } {
  const syms = symbols
    .filter((s) => s.shndx === section.index && s.type !== STT.SECTION && s.type !== STT.FILE)
    .sort((a, b) => a.value - b.value || a.index - b.index);
  if (syms.length === 0) return { specs: [], placements: [] };
  if (section.type !== SHT.PROGBITS) {
    throw new ElfError(`legacy map section ${section.name} has no contents`, { section: section.name });
  }
  const data = section.data;
  // All records have the same size: the section divided by the number of maps
  // (objects built for loaders with a larger bpf_map_def have extra fields we ignore).
  const recordSize = Math.floor(data.length / syms.length);
  if (recordSize < LEGACY_DEF_SIZE) {
    throw new ElfError(
      `legacy map section ${section.name}: ${data.length} bytes for ${syms.length} maps is less than ${LEGACY_DEF_SIZE} bytes each`,
      { section: section.name },
    );
  }
  const specs: MapSpec[] = [];
  const placements: MapPlacement[] = [];
  let prevEnd = 0;
  for (const sym of syms) {
    const off = sym.value;
    if (!sym.name) throw new ElfError(`legacy map at offset ${off} of ${section.name} has no name`, { section: section.name });
    if (off % 4 !== 0 || off + recordSize > data.length || off < prevEnd) {
      throw new ElfError(`legacy map ${sym.name}: definition at offset ${off} is misplaced in ${section.name}`, {
        section: section.name,
      });
    }
    prevEnd = off + recordSize;
    specs.push({
      name: sym.name,
      kernelName: kernelObjectName(sym.name),
      type: data.readUInt32LE(off),
      keySize: data.readUInt32LE(off + 4),
      valueSize: data.readUInt32LE(off + 8),
      maxEntries: data.readUInt32LE(off + 12),
      flags: data.readUInt32LE(off + 16),
      pinning: 'none',
      contents: [],
      freeze: false,
      origin: 'legacy',
      section: section.name,
    });
    placements.push({ name: sym.name, offset: off, size: recordSize });
  }
  return { specs, placements };
}

/** Parses BTF map definitions. `symbols` are those of the `.maps` section, by name. */
export function parseBtfMaps(
  section: ElfSection,
  btf: Btf,
  symbolsByName: Map<string, ElfSymbol>,
): { specs: MapSpec[]; placements: MapPlacement[] } {
  const datasec = btf.tryFindType(section.name, 'datasec');
  if (!datasec || datasec.kind !== 'datasec') {
    throw new ElfError(`section ${section.name} has no BTF DATASEC describing its maps`, { section: section.name });
  }
  const specs: MapSpec[] = [];
  const placements: MapPlacement[] = [];
  for (const vsi of datasec.vars) {
    const v = btf.type(vsi.type);
    if (v.kind !== 'var') {
      throw new ElfError(`${section.name}: DATASEC entry ${vsi.type} is a ${v.kind}, expected a variable`, {
        section: section.name,
      });
    }
    const name = v.name;
    if (v.linkage === 'extern') {
      throw new ElfError(
        `map ${name} is an extern declaration: link the object with its definition first (e.g. bpftool gen object)`,
        { section: section.name },
      );
    }
    const def = btf.resolve(v.type);
    if (def.kind !== 'struct') {
      throw new ElfError(`map ${name}: definition is a ${def.kind}, expected a struct`, { section: section.name });
    }
    const parsed = parseMapDef(btf, name, def.members, false, section.name);
    specs.push(parsed.spec);
    const sym = symbolsByName.get(name);
    const size = Math.max(vsi.size, sym?.size ?? 0, def.size);
    placements.push({
      name,
      offset: vsi.offset,
      size,
      valuesOffset: parsed.valuesOffset,
      valuesKind: parsed.valuesKind,
    });
  }
  return { specs, placements };
}

interface ParsedMapDef {
  spec: MapSpec;
  valuesOffset?: number;
  valuesKind?: 'maps' | 'programs';
}

function parseMapDef(btf: Btf, name: string, members: BtfMember[], inner: boolean, sectionName: string): ParsedMapDef {
  const fail = (msg: string): never => {
    throw new ElfError(`map ${name}: ${msg}`, { section: sectionName });
  };
  /** `__uint(field, N)` is `int (*field)[N]`: the value is the array's length. */
  const intField = (m: BtfMember): number => {
    const ptr = btf.resolve(m.type);
    if (ptr.kind !== 'ptr') fail(`member ${m.name} should be a pointer to an array (__uint), found ${ptr.kind}`);
    const arr = btf.resolve((ptr as { type: number }).type);
    if (arr.kind !== 'array') fail(`member ${m.name} should point to an array (__uint), found ${arr.kind}`);
    return (arr as { nelems: number }).nelems;
  };
  /** `__type(field, T)` is `T *field`: the pointee's id and size. */
  const typeField = (m: BtfMember): { id: number; size: number } => {
    const ptr = btf.resolve(m.type);
    if (ptr.kind !== 'ptr') fail(`member ${m.name} should be a pointer to a type (__type), found ${ptr.kind}`);
    const id = (ptr as { type: number }).type;
    let size: number;
    try {
      size = btf.sizeof(id);
    } catch (err) {
      return fail(`cannot determine the size of member ${m.name}'s type [${id}]: ${(err as Error).message}`);
    }
    return { id, size };
  };
  const setSize = (what: 'keySize' | 'valueSize', size: number, spec: MapSpec): void => {
    if (spec[what] !== 0 && spec[what] !== size) {
      fail(`conflicting ${what === 'keySize' ? 'key' : 'value'} size ${spec[what]} != ${size}`);
    }
    spec[what] = size;
  };

  const spec: MapSpec = {
    name,
    kernelName: kernelObjectName(name),
    type: 0,
    keySize: 0,
    valueSize: 0,
    maxEntries: 0,
    flags: 0,
    pinning: 'none',
    contents: [],
    freeze: false,
    origin: 'btf',
    section: sectionName,
  };
  let valuesOffset: number | undefined;
  let valuesKind: 'maps' | 'programs' | undefined;

  members.forEach((m, i) => {
    switch (m.name) {
      case 'type':
        spec.type = intField(m);
        break;
      case 'max_entries':
        spec.maxEntries = intField(m);
        break;
      case 'map_flags':
        spec.flags = intField(m);
        break;
      case 'numa_node':
        spec.numaNode = intField(m);
        break;
      case 'key_size':
        setSize('keySize', intField(m), spec);
        break;
      case 'value_size':
        setSize('valueSize', intField(m), spec);
        break;
      case 'key': {
        const { id, size } = typeField(m);
        setSize('keySize', size, spec);
        spec.keyType = id;
        break;
      }
      case 'value': {
        const { id, size } = typeField(m);
        setSize('valueSize', size, spec);
        spec.valueType = id;
        break;
      }
      case 'map_extra':
        spec.mapExtra = mapExtraField(btf, m, fail);
        break;
      case 'pinning': {
        if (inner) fail('an inner map template cannot be pinned');
        const pin = intField(m);
        if (pin !== PIN_NONE && pin !== PIN_BY_NAME) fail(`invalid pinning value ${pin}`);
        spec.pinning = pin === PIN_BY_NAME ? 'byName' : 'none';
        break;
      }
      case 'values': {
        if (inner) fail('an inner map template cannot have values (only one level of map-in-map)');
        if (i !== members.length - 1) fail("member 'values' must be the last one");
        const isMapInMap = spec.type === BPF_MAP_TYPE.ARRAY_OF_MAPS || spec.type === BPF_MAP_TYPE.HASH_OF_MAPS;
        const isProgArray = spec.type === BPF_MAP_TYPE.PROG_ARRAY;
        if (!isMapInMap && !isProgArray) {
          fail("member 'values' needs type ARRAY_OF_MAPS, HASH_OF_MAPS or PROG_ARRAY declared before it");
        }
        setSize('valueSize', 4, spec);
        const arr = btf.type(m.type);
        if (arr.kind !== 'array' || arr.nelems !== 0) fail("member 'values' should be a zero-length array (__array)");
        const ptr = btf.resolve((arr as { type: number }).type);
        if (ptr.kind !== 'ptr') fail(`'values' elements should be pointers, found ${ptr.kind}`);
        const target = btf.resolve((ptr as { type: number }).type);
        if (m.bitOffset % 8 !== 0) fail("member 'values' is not byte aligned");
        valuesOffset = m.bitOffset / 8;
        if (isProgArray) {
          if (target.kind !== 'func_proto') fail(`'values' of a program array should point to functions, found ${target.kind}`);
          valuesKind = 'programs';
        } else {
          if (target.kind !== 'struct') fail(`'values' of a map-in-map should point to a map definition struct, found ${target.kind}`);
          const innerDef = parseMapDef(btf, `${name}.inner`, (target as { members: BtfMember[] }).members, true, sectionName);
          spec.innerMap = innerDef.spec;
          valuesKind = 'maps';
        }
        break;
      }
      default:
        fail(`unknown member '${m.name}'`);
    }
  });
  if (spec.type === 0) fail('map type is not specified');
  return { spec, valuesOffset, valuesKind };
}

/** `map_extra` is a 64-bit value: either `__uint` style, or an enum with one value (`__ulong`). */
function mapExtraField(btf: Btf, m: BtfMember, fail: (msg: string) => never): bigint {
  const t: BtfType = btf.resolve(m.type);
  if (t.kind === 'ptr') {
    const arr = btf.resolve(t.type);
    if (arr.kind !== 'array') fail(`member ${m.name} should point to an array, found ${arr.kind}`);
    return BigInt((arr as { nelems: number }).nelems);
  }
  if (t.kind === 'enum' || t.kind === 'enum64') {
    if (t.values.length !== 1) fail(`member ${m.name}: expected an enum with exactly one value`);
    const v = t.values[0].value;
    return BigInt.asUintN(64, BigInt(v));
  }
  return fail(`member ${m.name} should be __uint or __ulong, found ${t.kind}`);
}

/** Key of a map's initial entry at `index`: a 4-byte little-endian integer. */
export function indexKey(index: number): Buffer {
  const key = Buffer.alloc(4);
  key.writeUInt32LE(index);
  return key;
}

/** Sorts map contents by their 4-byte key (used for `.values` slots). */
export function sortContents(entries: MapEntrySpec[]): MapEntrySpec[] {
  return entries.sort((a, b) => a.key.readUInt32LE(0) - b.key.readUInt32LE(0));
}
