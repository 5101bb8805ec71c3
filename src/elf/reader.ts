// ELF container reading: header validation, section headers and section data.
//
// The `elfy` package decodes the ELF header and the section header table; we
// check everything elfy would trip over (or silently accept) first, so that a
// malformed file always ends in an ElfError and never in a RangeError, an
// assertion from inside elfy or a huge allocation.

import elfy from 'elfy';
import { ElfError, TsbpfError } from '../errors.js';

/** Section header types we care about (SHT_*). */
export const SHT = {
  NULL: 0,
  PROGBITS: 1,
  SYMTAB: 2,
  STRTAB: 3,
  RELA: 4,
  NOBITS: 8,
  REL: 9,
} as const;

/** Section header flags (SHF_*). */
export const SHF = {
  WRITE: 0x1,
  ALLOC: 0x2,
  EXECINSTR: 0x4,
} as const;

const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const PHDR_SIZE = 56;
const EM_BPF = 247;
const ET_REL = 1;
/** First reserved section index; e_shstrndx == SHN_XINDEX means "look in section 0". */
const SHN_LORESERVE = 0xff00;

/** A few machine numbers, so that "this is not a BPF object" errors say what the file is. */
const MACHINE_NAMES: Record<number, string> = {
  0: 'none',
  3: 'i386',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC64',
  22: 'S/390',
  40: 'ARM',
  43: 'SPARC v9',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
  258: 'LoongArch',
};

const ELF_TYPE_NAMES: Record<number, string> = {
  0: 'ET_NONE',
  1: 'ET_REL',
  2: 'ET_EXEC',
  3: 'ET_DYN',
  4: 'ET_CORE',
};

/** One section of the object, with its bytes. */
export interface ElfSection {
  index: number;
  name: string;
  /** SHT_* number. */
  type: number;
  /** SHF_WRITE / SHF_ALLOC / SHF_EXECINSTR bits. */
  flags: number;
  /** File offset of the data (meaningless for SHT_NOBITS). */
  offset: number;
  /** Size in bytes (for SHT_NOBITS: the size in memory; no bytes in the file). */
  size: number;
  link: number;
  info: number;
  /** sh_entsize, read from the raw header (elfy decodes it from the wrong offset). */
  entsize: number;
  /** The section's bytes: a view into the input, empty for SHT_NOBITS and SHT_NULL. */
  data: Buffer;
}

export interface ElfFile {
  sections: ElfSection[];
}

const ELFY_TYPES: Record<string, number> = {
  null: SHT.NULL,
  undef: SHT.NULL,
  progbits: SHT.PROGBITS,
  symtab: SHT.SYMTAB,
  strtab: SHT.STRTAB,
  rela: SHT.RELA,
  nobits: SHT.NOBITS,
  rel: SHT.REL,
};

function u64(buf: Buffer, off: number): bigint {
  return buf.readBigUInt64LE(off);
}

/** Checks the ELF header and the section header table without trusting any field. */
function validateHeader(buf: Buffer): { shoff: number; shnum: number; shstrndx: number } {
  if (buf.length < 4 || buf[0] !== 0x7f || buf[1] !== 0x45 || buf[2] !== 0x4c || buf[3] !== 0x46) {
    throw new ElfError(
      buf.length === 0 ? 'not an ELF file: it is empty (0 bytes)' : 'not an ELF file (bad magic): pass a BPF object built with clang -target bpf -c',
    );
  }
  if (buf.length < EHDR_SIZE) {
    throw new ElfError(`truncated ELF header: ${buf.length} bytes, need ${EHDR_SIZE}`);
  }
  const elfClass = buf[4];
  if (elfClass !== 2) {
    throw new ElfError(
      elfClass === 1
        ? '32-bit ELF objects are not supported: found ELFCLASS32, want ELFCLASS64 (build with clang -target bpf)'
        : `invalid ELF class ${elfClass}, want ELFCLASS64 (2)`,
    );
  }
  const data = buf[5];
  if (data === 2) {
    throw new ElfError('big-endian objects are not supported: found ELFDATA2MSB (bpfeb), want ELFDATA2LSB (build with clang -target bpfel)');
  }
  if (data !== 1) throw new ElfError(`invalid ELF data encoding ${data}, want ELFDATA2LSB (1)`);

  const machine = buf.readUInt16LE(18);
  if (machine !== EM_BPF) {
    const name = MACHINE_NAMES[machine] ?? 'unknown';
    throw new ElfError(
      `not a BPF object: e_machine is ${machine} (${name}), want EM_BPF (${EM_BPF}): this is code for another machine; build with clang -target bpf`,
    );
  }
  const type = buf.readUInt16LE(16);
  if (type !== ET_REL) {
    throw new ElfError(
      `not a relocatable BPF object: e_type is ${ELF_TYPE_NAMES[type] ?? type}, want ET_REL (build with clang -c, do not link)`,
    );
  }

  const phoff = u64(buf, 32);
  const shoff = u64(buf, 40);
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  const shentsize = buf.readUInt16LE(58);
  const shnum = buf.readUInt16LE(60);
  const shstrndx = buf.readUInt16LE(62);
  const len = BigInt(buf.length);

  // elfy decodes program headers when both e_phoff and e_phnum are set.
  if (phoff !== 0n && phnum !== 0) {
    if (phentsize < PHDR_SIZE) throw new ElfError(`invalid e_phentsize ${phentsize}`);
    if (phoff + BigInt(phnum) * BigInt(phentsize) > len) {
      throw new ElfError('program header table lies outside the file');
    }
  }

  if (shoff === 0n || shnum === 0) {
    // shnum == 0 with a non-zero shoff means "extended numbering" (count in
    // section 0), which no BPF compiler produces.
    throw new ElfError('object has no section header table');
  }
  if (shentsize !== SHDR_SIZE) throw new ElfError(`invalid e_shentsize ${shentsize}, expected ${SHDR_SIZE}`);
  if (shoff + BigInt(shnum) * BigInt(SHDR_SIZE) > len) {
    throw new ElfError(`section header table (${shnum} entries at offset ${shoff}) lies outside the file`);
  }
  if (shstrndx >= SHN_LORESERVE) throw new ElfError('extended section header string table index is not supported');
  if (shstrndx === 0 || shstrndx >= shnum) {
    throw new ElfError(`invalid section header string table index ${shstrndx} (${shnum} sections)`);
  }

  const off = Number(shoff);
  for (let i = 0; i < shnum; i++) {
    const h = off + i * SHDR_SIZE;
    const shType = buf.readUInt32LE(h + 4);
    if (shType === SHT.NULL || shType === SHT.NOBITS) continue;
    const secOff = u64(buf, h + 24);
    const secSize = u64(buf, h + 32);
    if (secOff + secSize > len) {
      throw new ElfError(`section ${i}: data (offset ${secOff}, size ${secSize}) lies outside the file`);
    }
  }
  const strHdr = off + shstrndx * SHDR_SIZE;
  if (buf.readUInt32LE(strHdr + 4) !== SHT.STRTAB) {
    throw new ElfError(`section header string table (section ${shstrndx}) is not SHT_STRTAB`);
  }
  return { shoff: off, shnum, shstrndx };
}

/** Parses the ELF container of a BPF object: every section with its name and bytes. */
export function readElf(buf: Buffer): ElfFile {
  const { shoff, shnum } = validateHeader(buf);

  let parsed: ReturnType<typeof elfy.parse>;
  try {
    parsed = elfy.parse(buf);
  } catch (err) {
    if (err instanceof TsbpfError) throw err;
    throw new ElfError(`malformed ELF file: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
  const raw = parsed?.body?.sections;
  if (!Array.isArray(raw) || raw.length !== shnum) {
    throw new ElfError('malformed ELF file: section header table could not be decoded');
  }

  const sections: ElfSection[] = raw.map((s, index) => {
    const h = shoff + index * SHDR_SIZE;
    const type = typeof s.type === 'number' ? s.type : (ELFY_TYPES[s.type] ?? buf.readUInt32LE(h + 4));
    const f = s.flags ?? {};
    const flags = (f.write ? SHF.WRITE : 0) | (f.alloc ? SHF.ALLOC : 0) | (f.execinstr ? SHF.EXECINSTR : 0);
    // elfy gets sh_entsize wrong for 64-bit files: read it from the header.
    const entsize = Number(u64(buf, h + 56));
    const hasData = type !== SHT.NOBITS && type !== SHT.NULL;
    return {
      index,
      name: typeof s.name === 'string' ? s.name : '',
      type,
      flags,
      offset: s.off,
      size: s.size,
      link: s.link,
      info: s.info,
      entsize,
      data: hasData ? s.data : buf.subarray(0, 0),
    };
  });
  return { sections };
}
