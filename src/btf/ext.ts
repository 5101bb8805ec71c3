// .BTF.ext: per-program metadata that clang emits next to .BTF.
//
// Layout (little-endian):
//   header   magic u16 (0xeb9f), version u8 (1), flags u8, hdr_len u32,
//            func_info_off u32, func_info_len u32, line_info_off u32, line_info_len u32,
//            [core_relo_off u32, core_relo_len u32]   (only when hdr_len >= 32)
//   each subsection (offsets relative to the end of the header):
//            record_size u32, then for each ELF section:
//              sec_name_off u32 (into the .BTF string table), num_info u32, num_info records
//
// In the file, record instruction offsets are in bytes from the start of the ELF section; we
// convert them to instructions (8 bytes each), which is what the loader and the kernel use.

import { BtfError } from '../errors.js';
import type { Btf } from './btf.js';
import type { BtfExt, CoreRelo, FuncInfo, LineInfo } from './types.js';

const MAGIC = 0xeb9f;
const MIN_HEADER_LEN = 24;
const CORE_HEADER_LEN = 32;
const INSN_SIZE = 8;
/** Smallest record sizes the format defines; newer producers may append fields. */
const FUNC_INFO_MIN = 8;
const LINE_INFO_MIN = 16;
const CORE_RELO_MIN = 16;
const LINE_SHIFT = 10;
const COLUMN_MASK = 0x3ff;
const MAX_LINE = 0xffffffff >>> LINE_SHIFT;

/**
 * Parses .BTF.ext. `btf` must be the spec parsed from the same object's .BTF: section names, file
 * names, source lines and CO-RE access strings are offsets into its (parsed) string table.
 * Throws BtfError on malformed data.
 */
export function parseBtfExt(data: Buffer | Uint8Array, btf: Btf): BtfExt {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < MIN_HEADER_LEN) {
    throw new BtfError(`BTF.ext is ${buf.length} bytes, too short for the ${MIN_HEADER_LEN}-byte header`);
  }
  const magic = buf.readUInt16LE(0);
  if (magic === 0x9feb) throw new BtfError('BTF.ext is big-endian; only little-endian is supported');
  if (magic !== MAGIC) throw new BtfError(`not BTF.ext: magic is 0x${magic.toString(16)}, want 0xeb9f`);
  if (buf[2] !== 1) throw new BtfError(`unsupported BTF.ext version ${buf[2]}`);
  const hdrLen = buf.readUInt32LE(4);
  if (hdrLen < MIN_HEADER_LEN || hdrLen > buf.length) {
    throw new BtfError(`BTF.ext header length ${hdrLen} is invalid for ${buf.length} bytes of data`);
  }
  const body = buf.subarray(hdrLen);
  const section = (offAt: number, what: string): Buffer => {
    const off = buf.readUInt32LE(offAt);
    const len = buf.readUInt32LE(offAt + 4);
    if (off + len > body.length) {
      throw new BtfError(`BTF.ext ${what} (offset ${off}, ${len} bytes) is past the end of the data`);
    }
    return body.subarray(off, off + len);
  };

  const funcInfos = parseSubsection(section(8, 'func_info'), 'func_info', FUNC_INFO_MIN, btf, (b, p, sec) => {
    const typeId = b.readUInt32LE(p + 4);
    checkTypeId(btf, typeId, 'func_info', sec);
    return { insnOff: insnOffset(b.readUInt32LE(p), 'func_info', sec), typeId } satisfies FuncInfo;
  });

  const lineInfos = parseSubsection(section(16, 'line_info'), 'line_info', LINE_INFO_MIN, btf, (b, p, sec) => {
    const lineCol = b.readUInt32LE(p + 12);
    return {
      insnOff: insnOffset(b.readUInt32LE(p), 'line_info', sec),
      fileName: btf.stringAt(b.readUInt32LE(p + 4)),
      lineText: btf.stringAt(b.readUInt32LE(p + 8)),
      line: lineCol >>> LINE_SHIFT,
      column: lineCol & COLUMN_MASK,
    } satisfies LineInfo;
  });

  let coreRelos = new Map<string, CoreRelo[]>();
  if (hdrLen >= CORE_HEADER_LEN) {
    coreRelos = parseSubsection(section(24, 'core_relo'), 'core_relo', CORE_RELO_MIN, btf, (b, p, sec) => {
      const typeId = b.readUInt32LE(p + 4);
      checkTypeId(btf, typeId, 'core_relo', sec);
      return {
        insnOff: insnOffset(b.readUInt32LE(p), 'core_relo', sec),
        typeId,
        accessor: btf.stringAt(b.readUInt32LE(p + 8)),
        kind: b.readUInt32LE(p + 12),
      } satisfies CoreRelo;
    });
  }
  return { funcInfos, lineInfos, coreRelos };
}

function insnOffset(bytes: number, what: string, sec: string): number {
  if (bytes % INSN_SIZE !== 0) {
    throw new BtfError(`BTF.ext ${what} in ${sec}: instruction offset ${bytes} is not a multiple of ${INSN_SIZE}`);
  }
  return bytes / INSN_SIZE;
}

function checkTypeId(btf: Btf, id: number, what: string, sec: string): void {
  if (id >= btf.length) throw new BtfError(`BTF.ext ${what} in ${sec}: type id ${id} does not exist`);
}

/** Reads one subsection into records per ELF section name (records of a repeated name are appended). */
function parseSubsection<T>(
  b: Buffer,
  what: string,
  minRecord: number,
  btf: Btf,
  decode: (b: Buffer, p: number, section: string) => T,
): Map<string, T[]> {
  const out = new Map<string, T[]>();
  if (b.length === 0) return out;
  if (b.length < 4) throw new BtfError(`BTF.ext ${what} is too short for its record size`);
  const recordSize = b.readUInt32LE(0);
  if (recordSize < minRecord || recordSize % 4 !== 0) {
    throw new BtfError(`BTF.ext ${what} record size ${recordSize} is invalid (minimum ${minRecord}, multiple of 4)`);
  }
  let p = 4;
  while (p < b.length) {
    if (p + 8 > b.length) throw new BtfError(`BTF.ext ${what} has a truncated section header`);
    const sec = btf.stringAt(b.readUInt32LE(p));
    const num = b.readUInt32LE(p + 4);
    p += 8;
    if (num * recordSize > b.length - p) {
      throw new BtfError(`BTF.ext ${what} for ${sec} claims ${num} records, more than the data holds`);
    }
    let list = out.get(sec);
    if (!list) out.set(sec, (list = []));
    for (let k = 0; k < num; k++, p += recordSize) list.push(decode(b, p, sec));
  }
  return out;
}

function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new BtfError(`${what} ${v} is not a u32`);
  return v;
}

/**
 * bpf_func_info records for BPF_PROG_LOAD: 8 bytes each, insn_off (in instructions, as the kernel
 * wants at load time) and type_id (a FUNC in the BTF loaded with the program).
 */
export function marshalFuncInfos(infos: readonly FuncInfo[]): Buffer {
  const out = Buffer.alloc(infos.length * 8);
  infos.forEach((fi, k) => {
    out.writeUInt32LE(u32(fi.insnOff, 'func_info insn_off'), k * 8);
    out.writeUInt32LE(u32(fi.typeId, 'func_info type_id'), k * 8 + 4);
  });
  return out;
}

/**
 * bpf_line_info records for BPF_PROG_LOAD: 16 bytes each, insn_off (in instructions),
 * file_name_off, line_off, line_col (line << 10 | column).
 *
 * The string offsets point into the string table of the BTF loaded with the program, so they come
 * from `btf.stringOffset()`: the offset each string has in what `btf.marshal()` produces (adding the
 * string to that table when it is missing). Call this *before* `btf.marshal()` so that the marshalled
 * BTF contains the strings. Columns above 1023 do not fit the format and are recorded as 0 (unknown).
 */
export function marshalLineInfos(infos: readonly LineInfo[], btf: Btf): Buffer {
  const out = Buffer.alloc(infos.length * 16);
  infos.forEach((li, k) => {
    const line = u32(li.line, 'line_info line');
    if (line > MAX_LINE) throw new BtfError(`line_info line ${line} does not fit in 22 bits`);
    const column = u32(li.column, 'line_info column');
    const o = k * 16;
    out.writeUInt32LE(u32(li.insnOff, 'line_info insn_off'), o);
    out.writeUInt32LE(btf.stringOffset(li.fileName), o + 4);
    out.writeUInt32LE(btf.stringOffset(li.lineText), o + 8);
    out.writeUInt32LE(((line << LINE_SHIFT) | (column > COLUMN_MASK ? 0 : column)) >>> 0, o + 12);
  });
  return out;
}
