// Minimal typings for the `elfy` package (CommonJS, ships without types).
// Only what src/elf/reader.ts uses is declared. Note: elfy reads the 64-bit
// sh_addralign/sh_entsize at wrong offsets, so those two fields are left out
// on purpose; read them from the raw section header instead.

declare module 'elfy' {
  export interface ElfySection {
    /** Resolved through the section header string table. */
    name: string;
    /** e.g. 'progbits', 'symtab', 'strtab', 'nobits', 'rel'; the raw number when elfy has no name for it. */
    type: string | number;
    /** Flag names that are set, e.g. { alloc: true, execinstr: true }. Unknown bits appear by their number. */
    flags: Record<string, boolean>;
    addr: number;
    off: number;
    size: number;
    link: number;
    info: number;
    /** View of the file bytes [off, off + size), clamped to the file. */
    data: Buffer;
  }

  export interface ElfyHeader {
    class: string;
    endian: string;
    type: string | undefined;
    machine: string | undefined;
    shoff: number;
    shnum: number;
    shentsize: number;
    shstrndx: number;
    body: {
      programs: unknown[];
      sections: ElfySection[];
    };
  }

  const elfy: {
    parse(buf: Buffer): ElfyHeader;
  };
  export default elfy;
}
