// Kernel structs described as data. The offsets come from
// kernel-defs.generated.ts (generated from kernel BTF by
// scripts/gen-kernel-defs.ts; a test checks it against the running kernel).
// This module only knows how to write and read fields by name.

import { LAYOUTS } from './kernel-defs.generated.js';

export type LayoutName = keyof typeof LAYOUTS;
type Fields<L extends LayoutName> = (typeof LAYOUTS)[L]['fields'];
export type FieldName<L extends LayoutName> = keyof Fields<L> & string;

type ByteField = readonly [number, number];
type BitField = { readonly bit: number; readonly bits: number };

function field(layout: LayoutName, name: string): ByteField | BitField {
  const f = (LAYOUTS[layout].fields as Record<string, ByteField | BitField>)[name];
  if (!f) throw new Error(`tsbpf internal error: ${layout} has no field ${name}`);
  return f;
}

export function layoutSize(layout: LayoutName): number {
  return LAYOUTS[layout].size;
}

/** Byte offset of the end of a field: the smallest struct size that includes it. */
export function offsetOfEnd(layout: LayoutName, name: string): number {
  const f = field(layout, name);
  if (Array.isArray(f)) return (f as ByteField)[0] + (f as ByteField)[1];
  const b = f as BitField;
  return Math.ceil((b.bit + b.bits) / 8);
}

/** Write integers (number or bigint) into a struct at `base` inside `buf`. */
export function writeFields<L extends LayoutName>(
  buf: Buffer,
  base: number,
  layout: L,
  values: Partial<Record<FieldName<L>, number | bigint | boolean>>,
): void {
  for (const name of Object.keys(values) as FieldName<L>[]) {
    const v = values[name];
    if (v === undefined) continue;
    const f = field(layout, name);
    if (Array.isArray(f)) {
      const [off, size] = f as ByteField;
      writeInt(buf, base + off, size, v);
    } else {
      const { bit, bits } = f as BitField;
      // Bitfields in the kernel structs we use live in a u64 word (little-endian).
      const wordOff = base + Math.floor(bit / 64) * 8;
      const shift = BigInt(bit % 64);
      const mask = ((1n << BigInt(bits)) - 1n) << shift;
      const cur = buf.readBigUInt64LE(wordOff);
      const val = (BigInt(typeof v === 'boolean' ? Number(v) : v) << shift) & mask;
      buf.writeBigUInt64LE((cur & ~mask) | val, wordOff);
    }
  }
}

/** Write `bytes` (e.g. a name) into a char-array field, truncated to the field with a NUL kept. */
export function writeBytesField<L extends LayoutName>(buf: Buffer, base: number, layout: L, name: FieldName<L>, bytes: Uint8Array): void {
  const f = field(layout, name) as ByteField;
  const [off, size] = f;
  const n = Math.min(bytes.length, size - 1);
  buf.set(bytes.subarray(0, n), base + off);
}

function writeInt(buf: Buffer, off: number, size: number, v: number | bigint | boolean): void {
  if (typeof v === 'boolean') v = v ? 1 : 0;
  switch (size) {
    case 1:
      buf.writeUInt8(Number(v) & 0xff, off);
      break;
    case 2:
      buf.writeUInt16LE(Number(v) & 0xffff, off);
      break;
    case 4:
      buf.writeUInt32LE(Number(BigInt.asUintN(32, BigInt(v))), off);
      break;
    case 8:
      buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), off);
      break;
    default:
      throw new Error(`tsbpf internal error: cannot write a ${size}-byte integer field`);
  }
}

/** Read an unsigned integer field (u8/u16/u32 as number, u64 as bigint). */
export function readField<L extends LayoutName>(buf: Buffer, base: number, layout: L, name: FieldName<L>): number | bigint {
  const f = field(layout, name);
  if (!Array.isArray(f)) {
    const { bit, bits } = f as BitField;
    const word = buf.readBigUInt64LE(base + Math.floor(bit / 64) * 8);
    return Number((word >> BigInt(bit % 64)) & ((1n << BigInt(bits)) - 1n));
  }
  const [off, size] = f as ByteField;
  switch (size) {
    case 1:
      return buf.readUInt8(base + off);
    case 2:
      return buf.readUInt16LE(base + off);
    case 4:
      return buf.readUInt32LE(base + off);
    case 8:
      return buf.readBigUInt64LE(base + off);
    default:
      return buf.readUInt8(base + off);
  }
}

export function readU32<L extends LayoutName>(buf: Buffer, base: number, layout: L, name: FieldName<L>): number {
  return Number(readField(buf, base, layout, name));
}

export function readU64<L extends LayoutName>(buf: Buffer, base: number, layout: L, name: FieldName<L>): bigint {
  return BigInt(readField(buf, base, layout, name));
}

/** Bytes of a char/u8 array field. */
export function readBytesField<L extends LayoutName>(buf: Buffer, base: number, layout: L, name: FieldName<L>): Buffer {
  const [off, size] = field(layout, name) as ByteField;
  return Buffer.from(buf.subarray(base + off, base + off + size));
}
