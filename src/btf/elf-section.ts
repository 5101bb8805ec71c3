// Just enough ELF to pull one section's bytes out of an object file, so that the BTF layer can read
// `.BTF` from a clang-compiled object or a vmlinux image without depending on src/elf.

import { BtfError } from '../errors.js';

const SHT_NOBITS = 8;
const SHN_XINDEX = 0xffff;

/** True when `data` starts with the ELF magic. */
export function isElf(data: Buffer): boolean {
  return data.length >= 4 && data[0] === 0x7f && data[1] === 0x45 && data[2] === 0x4c && data[3] === 0x46;
}

/**
 * Bytes of the section called `name` (a view into `data`), or undefined when there is none.
 * Little-endian ELF32 and ELF64 only. Throws BtfError when the ELF structure is malformed.
 */
export function findElfSection(data: Buffer, name: string): Buffer | undefined {
  if (!isElf(data) || data.length < 52) throw new BtfError('not an ELF file');
  const cls = data[4];
  if (cls !== 1 && cls !== 2) throw new BtfError(`unknown ELF class ${cls}`);
  if (data[5] === 2) throw new BtfError('ELF file is big-endian; only little-endian is supported');
  if (data[5] !== 1) throw new BtfError(`unknown ELF data encoding ${data[5]}`);
  const is64 = cls === 2;
  if (is64 && data.length < 64) throw new BtfError('ELF header is truncated');

  const num = (off: number): number => (is64 ? Number(data.readBigUInt64LE(off)) : data.readUInt32LE(off));
  const shoff = num(is64 ? 0x28 : 0x20);
  const shentsize = data.readUInt16LE(is64 ? 0x3a : 0x2e);
  let shnum = data.readUInt16LE(is64 ? 0x3c : 0x30);
  let shstrndx = data.readUInt16LE(is64 ? 0x3e : 0x32);
  const minEntry = is64 ? 64 : 40;
  if (shoff === 0) return undefined;
  if (shentsize < minEntry) throw new BtfError(`ELF section header size ${shentsize} is too small`);

  const header = (i: number) => {
    const at = shoff + i * shentsize;
    if (at + minEntry > data.length) throw new BtfError(`ELF section header ${i} is past the end of the file`);
    return is64
      ? {
          name: data.readUInt32LE(at),
          type: data.readUInt32LE(at + 4),
          offset: num(at + 24),
          size: num(at + 32),
          link: data.readUInt32LE(at + 40),
        }
      : {
          name: data.readUInt32LE(at),
          type: data.readUInt32LE(at + 4),
          offset: data.readUInt32LE(at + 16),
          size: data.readUInt32LE(at + 20),
          link: data.readUInt32LE(at + 24),
        };
  };
  // More than 0xff00 sections: the real count and string table index live in section 0.
  if (shnum === 0) shnum = header(0).size;
  if (shstrndx === SHN_XINDEX) shstrndx = header(0).link;
  if (shoff + shnum * shentsize > data.length) throw new BtfError('ELF section headers are past the end of the file');
  if (shstrndx >= shnum) throw new BtfError(`ELF section name table index ${shstrndx} is out of range`);

  const bytes = (h: { offset: number; size: number; type: number }, what: string): Buffer => {
    if (h.type === SHT_NOBITS) return Buffer.alloc(0);
    if (h.offset + h.size > data.length) throw new BtfError(`ELF section ${what} is past the end of the file`);
    return data.subarray(h.offset, h.offset + h.size);
  };
  const names = bytes(header(shstrndx), 'name table');
  const want = Buffer.from(name + '\0', 'utf8');
  for (let i = 1; i < shnum; i++) {
    const h = header(i);
    if (h.name + want.length <= names.length && names.compare(want, 0, want.length, h.name, h.name + want.length) === 0) {
      return bytes(h, name);
    }
  }
  return undefined;
}
