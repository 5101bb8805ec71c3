// The ELF symbol table (SHT_SYMTAB, Elf64_Sym) and the relocation tables
// (SHT_REL, Elf64_Rel) of a BPF object, decoded with bounds checks.

import { ElfError } from '../errors.js';
import { SHT, type ElfSection } from './reader.js';

/** Symbol types (low nibble of st_info). */
export const STT = {
  NOTYPE: 0,
  OBJECT: 1,
  FUNC: 2,
  SECTION: 3,
  FILE: 4,
} as const;

/** Symbol bindings (high nibble of st_info). */
export const STB = {
  LOCAL: 0,
  GLOBAL: 1,
  WEAK: 2,
} as const;

/** Symbol visibilities (st_other & 3). */
export const STV = {
  DEFAULT: 0,
  INTERNAL: 1,
  HIDDEN: 2,
  PROTECTED: 3,
} as const;

/**
 * Whether a symbol is visible outside the object: STB_GLOBAL/STB_WEAK without
 * hidden or internal visibility. Like libbpf, a `__hidden` global is treated
 * as static (its BTF linkage is rewritten to static at parse time).
 */
export function isExported(sym: ElfSymbol): boolean {
  return sym.bind !== STB.LOCAL && sym.visibility !== STV.HIDDEN && sym.visibility !== STV.INTERNAL;
}

export const SHN_UNDEF = 0;
export const SHN_LORESERVE = 0xff00;

const SYM_SIZE = 24;
const REL_SIZE = 16;

/** BPF relocation types (R_BPF_*). */
export const R_BPF = {
  NONE: 0,
  R_64_64: 1,
  ABS64: 2,
  ABS32: 3,
  NODYLD32: 4,
  R_64_32: 10,
} as const;

export interface ElfSymbol {
  index: number;
  name: string;
  /** STT_* */
  type: number;
  /** STB_* */
  bind: number;
  /** st_other & 3: STV_DEFAULT 0, STV_INTERNAL 1, STV_HIDDEN 2, STV_PROTECTED 3. */
  visibility: number;
  /** Section index (st_shndx). */
  shndx: number;
  /** st_value; for symbols in a relocatable object: the offset inside the section. */
  value: number;
  size: number;
}

export interface ElfRelocation {
  /** Byte offset inside the target section. */
  offset: number;
  /** R_BPF_* */
  type: number;
  /** Index into the symbol table. */
  symbol: number;
}

/** Reads a NUL-terminated string from a string table section. */
export function readString(strtab: ElfSection, off: number, what: string): string {
  const data = strtab.data;
  if (!Number.isInteger(off) || off < 0 || off >= data.length) {
    throw new ElfError(`${what}: name offset ${off} is outside string table ${strtab.name || strtab.index} (${data.length} bytes)`, {
      section: strtab.name,
    });
  }
  const end = data.indexOf(0, off);
  if (end < 0) {
    throw new ElfError(`${what}: unterminated name at offset ${off} of string table ${strtab.name || strtab.index}`, {
      section: strtab.name,
    });
  }
  return data.toString('utf8', off, end);
}

/** Converts a u64 file field to a number; values beyond 2^53 can't be valid offsets anyway. */
function toNumber(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

export interface SymbolTable {
  section: ElfSection;
  symbols: ElfSymbol[];
}

/** Finds and decodes the object's only SHT_SYMTAB. */
export function readSymbolTable(sections: ElfSection[]): SymbolTable {
  const tables = sections.filter((s) => s.type === SHT.SYMTAB);
  if (tables.length === 0) throw new ElfError('object has no symbol table (stripped?)');
  if (tables.length > 1) throw new ElfError('object has more than one symbol table');
  const symtab = tables[0];
  if (symtab.entsize !== SYM_SIZE) {
    throw new ElfError(`symbol table entry size is ${symtab.entsize}, expected ${SYM_SIZE}`, { section: symtab.name });
  }
  if (symtab.data.length % SYM_SIZE !== 0) {
    throw new ElfError(`symbol table size ${symtab.data.length} is not a multiple of ${SYM_SIZE}`, {
      section: symtab.name,
    });
  }
  const strtab = sections[symtab.link];
  if (!strtab || symtab.link === 0 || strtab.type !== SHT.STRTAB) {
    throw new ElfError(`symbol table links to section ${symtab.link}, which is not a string table`, {
      section: symtab.name,
    });
  }

  const data = symtab.data;
  const count = data.length / SYM_SIZE;
  const symbols: ElfSymbol[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const o = i * SYM_SIZE;
    const nameOff = data.readUInt32LE(o);
    const info = data[o + 4];
    const other = data[o + 5];
    const shndx = data.readUInt16LE(o + 6);
    const type = info & 0xf;
    // Section symbols usually have no name of their own: they are named after their section.
    let name = '';
    if (nameOff !== 0) {
      name = readString(strtab, nameOff, `symbol ${i}`);
    } else if (type === STT.SECTION && shndx > 0 && shndx < sections.length) {
      name = sections[shndx].name;
    }
    symbols[i] = {
      index: i,
      name,
      type,
      bind: info >> 4,
      visibility: other & 3,
      shndx,
      value: toNumber(data.readBigUInt64LE(o + 8)),
      size: toNumber(data.readBigUInt64LE(o + 16)),
    };
  }
  return { section: symtab, symbols };
}

/** Decodes an SHT_REL section; every symbol index is checked against the symbol table. */
export function readRelocations(rel: ElfSection, symbolCount: number): ElfRelocation[] {
  if (rel.entsize !== REL_SIZE) {
    throw new ElfError(`relocation section ${rel.name}: entry size ${rel.entsize}, expected ${REL_SIZE}`, {
      section: rel.name,
    });
  }
  const data = rel.data;
  if (data.length % REL_SIZE !== 0) {
    throw new ElfError(`relocation section ${rel.name}: size ${data.length} is not a multiple of ${REL_SIZE}`, {
      section: rel.name,
    });
  }
  const out: ElfRelocation[] = [];
  for (let o = 0; o < data.length; o += REL_SIZE) {
    const offset = toNumber(data.readBigUInt64LE(o));
    const type = data.readUInt32LE(o + 8);
    const symbol = data.readUInt32LE(o + 12);
    if (symbol >= symbolCount) {
      throw new ElfError(
        `relocation section ${rel.name}: entry ${o / REL_SIZE} refers to symbol ${symbol}, but there are only ${symbolCount}`,
        { section: rel.name },
      );
    }
    out.push({ offset, type, symbol });
  }
  return out;
}
