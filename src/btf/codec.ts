// BTF-typed codecs: the bytes of a value of some BTF type (a map value, a perf event record, a
// global) to a JS value and back. A Codec compiles the type tree once into closures, so decoding many
// records walks no BTF.
//
// Mapping (decode; encode is the inverse):
// - int of 1, 2 or 4 bytes → number (signedness from BTF); 8 or 16 bytes → bigint; bool → boolean.
// - array of `char` / `signed char` / `unsigned char` (the element, after const/volatile/type_tag but
//   not typedefs, is a 1-byte int with the char encoding or one of those names) → string, UTF-8, up to
//   the first NUL. So `__u8 buf[N]` stays an array of numbers.
// - other arrays → JS arrays; struct → plain object keyed by member name, anonymous struct/union members
//   flattened into the parent as C does; union → every member decoded; datasec → object keyed by
//   variable name.
// - bitfields (both kind_flag encodings) → the JS type of their declared type (number for ≤ 4-byte
//   storage types, bigint for 8-byte ones), signed ones sign-extended.
// - enum/enum64 → number (≤ 4 bytes) or bigint, or the enumerator's name with `enumNames` (values that
//   have no name stay numbers).
// - pointer → bigint; float → number (f32/f64); typedef/const/volatile/restrict/type_tag are followed.
// - scalars this codec cannot express as JS numbers (e.g. 16-byte floats, 3-byte ints) → Buffer copies.
//
// Encode refuses, with a TypeError naming the field path (`value.slots[3]: 4294967296 does not fit u32`):
// values out of range, wrong JS types (numbers for ≤ 4-byte fields, bigints for 8/16-byte ones, no
// implicit conversion), unknown keys, arrays with too many elements, strings that do not fit with their
// NUL (or contain one). Missing keys (or `undefined`) and missing trailing array elements encode as zero,
// like a C initializer. Any Uint8Array/Buffer of exactly the type's size is copied as is, at any level.
// A union takes one member, or several that agree on the bits they share (so that a decoded value
// encodes back); none leaves it zero. A member given counts with all its bytes (its own missing fields
// are zero), its padding excepted.
//
// Not every byte string survives decode → encode: padding is dropped, bools are normalized to 0/1, a
// char array is cut at its first NUL and decoded as UTF-8 (an unterminated or non-UTF-8 one decodes,
// but its string does not encode back: pass a Buffer). Members of a union that such a normalization
// makes disagree are refused.
//
// Codecs are compiled from the types as they are when first asked for, and cached per Btf: replacing
// a type with Btf.setType() afterwards does not change codecs already built for that Btf.

import { BtfError } from '../errors.js';
import type { Btf } from './btf.js';
import type { BtfMember, BtfType } from './types.js';

export interface DecodeOptions {
  /** Decode enums as the name of their value (a string) instead of a number/bigint. */
  enumNames?: boolean;
}

type Dec = (dv: DataView, b: Buffer, off: number, names: boolean) => unknown;
type Enc = (v: unknown, out: Buffer, dv: DataView, off: number) => void;

/** A compiled type. `enc` expects the `size` bytes at `off` to be zero. */
interface Node {
  size: number;
  label: string;
  dec: Dec;
  enc: Enc;
  /** The bits the value occupies (padding clear), `size` bytes. */
  mask(): Uint8Array;
}

/** Flattened fields of a struct, union or datasec. */
interface Composite extends Node {
  names: string[];
  decInto(obj: Record<string, unknown>, dv: DataView, b: Buffer, off: number, names: boolean): void;
  encFrom(src: Record<string, unknown>, out: Buffer, dv: DataView, off: number): void;
}

/** One member of a composite: a named member, a bitfield or a flattened anonymous composite. */
interface Entry {
  names: string[];
  decInto(obj: Record<string, unknown>, dv: DataView, b: Buffer, base: number, names: boolean): void;
  encFrom(src: Record<string, unknown>, out: Buffer, dv: DataView, base: number): void;
  /** ORs the bits it occupies into a mask of the parent's size. */
  cover(m: Uint8Array): void;
}

/** Thrown inside encoders; Codec.encode turns it into a TypeError with the path. */
class EncodeFailure extends Error {
  path: string;
  readonly detail: string;
  constructor(detail: string, path = '') {
    super(detail);
    this.detail = detail;
    this.path = path;
  }
}

function fail(detail: string): never {
  throw new EncodeFailure(detail);
}

function prefixed(e: unknown, segment: string): unknown {
  if (e instanceof EncodeFailure) e.path = segment + e.path;
  return e;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return `a ${v.length}-byte ${Buffer.isBuffer(v) ? 'Buffer' : 'Uint8Array'}`;
  switch (typeof v) {
    case 'string':
      return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    case 'bigint':
      return `${v}n`;
    case 'number':
    case 'boolean':
      return String(v);
    default:
      return typeof v;
  }
}

function hasOwn(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

function setProp(obj: Record<string, unknown>, name: string, v: unknown): void {
  if (name === '__proto__') Object.defineProperty(obj, name, { value: v, enumerable: true, writable: true, configurable: true });
  else obj[name] = v;
}

function fullMask(size: number): () => Uint8Array {
  let m: Uint8Array | undefined;
  return () => (m ??= new Uint8Array(size).fill(0xff));
}

function orInto(dst: Uint8Array, src: Uint8Array, at: number): void {
  for (let i = 0; i < src.length; i++) dst[at + i]! |= src[i]!;
}

function setBits(m: Uint8Array, pos: number, width: number): void {
  for (let i = pos; i < pos + width; i++) m[i >> 3]! |= 1 << (i & 7);
}

function typeLabel(t: BtfType): string {
  return `${t.kind}${t.name ? ' ' + t.name : ''}`;
}

/** Wraps an encoder so that a Uint8Array of exactly `size` bytes is copied as is. */
function rawOr(size: number, label: string, enc: Enc): Enc {
  return (v, out, dv, off) => {
    if (v instanceof Uint8Array) {
      if (v.length !== size) fail(`${label} is ${size} bytes, got ${describe(v)}`);
      out.set(v, off);
      return;
    }
    enc(v, out, dv, off);
  };
}

// ---- integers ---------------------------------------------------------------------------------

interface IntShape {
  size: number;
  signed: boolean;
}

function numRange(bits: number, signed: boolean): [number, number] {
  return signed ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
}

function bigRange(bits: number, signed: boolean): [bigint, bigint] {
  const b = BigInt(bits);
  return signed ? [-(1n << (b - 1n)), (1n << (b - 1n)) - 1n] : [0n, (1n << b) - 1n];
}

function checkNumber(v: unknown, min: number, max: number, label: string): number {
  if (typeof v !== 'number') fail(`expected a number for ${label}, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < min || v > max) fail(`${v} does not fit ${label}`);
  return v;
}

function checkBigint(v: unknown, min: bigint, max: bigint, label: string): bigint {
  if (typeof v !== 'bigint') fail(`expected a bigint for ${label}, got ${describe(v)}`);
  if (v < min || v > max) fail(`${v} does not fit ${label}`);
  return v;
}

/** Decoder/encoder of a whole-byte little-endian integer, or undefined for sizes JS has no view for. */
function intCodec({ size, signed }: IntShape, label: string): { dec: Dec; enc: Enc } | undefined {
  switch (size) {
    case 1:
    case 2:
    case 4: {
      const [min, max] = numRange(size * 8, signed);
      const dec: Dec =
        size === 1
          ? signed
            ? (dv, _b, off) => dv.getInt8(off)
            : (dv, _b, off) => dv.getUint8(off)
          : size === 2
            ? signed
              ? (dv, _b, off) => dv.getInt16(off, true)
              : (dv, _b, off) => dv.getUint16(off, true)
            : signed
              ? (dv, _b, off) => dv.getInt32(off, true)
              : (dv, _b, off) => dv.getUint32(off, true);
      const enc: Enc =
        size === 1
          ? (v, _o, dv, off) => dv.setUint8(off, checkNumber(v, min, max, label) & 0xff)
          : size === 2
            ? (v, _o, dv, off) => dv.setUint16(off, checkNumber(v, min, max, label) & 0xffff, true)
            : (v, _o, dv, off) => dv.setUint32(off, checkNumber(v, min, max, label) >>> 0, true);
      return { dec, enc };
    }
    case 8: {
      const [min, max] = bigRange(64, signed);
      return {
        dec: signed ? (dv, _b, off) => dv.getBigInt64(off, true) : (dv, _b, off) => dv.getBigUint64(off, true),
        enc: (v, _o, dv, off) => dv.setBigUint64(off, BigInt.asUintN(64, checkBigint(v, min, max, label)), true),
      };
    }
    case 16: {
      const [min, max] = bigRange(128, signed);
      return {
        dec: (dv, _b, off) => {
          const lo = dv.getBigUint64(off, true);
          const hi = signed ? dv.getBigInt64(off + 8, true) : dv.getBigUint64(off + 8, true);
          return (hi << 64n) | lo;
        },
        enc: (v, _o, dv, off) => {
          const u = BigInt.asUintN(128, checkBigint(v, min, max, label));
          dv.setBigUint64(off, BigInt.asUintN(64, u), true);
          dv.setBigUint64(off + 8, u >> 64n, true);
        },
      };
    }
    default:
      return undefined;
  }
}

/** A node that keeps bytes it cannot represent as a Buffer copy. */
function rawNode(size: number, label: string): Node {
  return {
    size,
    label,
    dec: (_dv, b, off) => Buffer.from(b.subarray(off, off + size)),
    enc: rawOr(size, label, (v) => fail(`${label} (${size} bytes) can only be given as a Buffer of ${size} bytes, got ${describe(v)}`)),
    mask: fullMask(size),
  };
}

/**
 * A bitfield of `width` bits at bit `pos` from `base`: `big` values are bigints, others numbers
 * (width ≤ 32). `post`/`pre` convert between the integer and the JS value (bool, enum names).
 */
function bitfield(
  pos: number,
  width: number,
  signed: boolean,
  big: boolean,
  label: string,
): { dec: (dv: DataView, b: Buffer, base: number) => number | bigint; enc: (v: unknown, out: Buffer, base: number) => void } {
  const byte = pos >> 3;
  const shift = pos & 7;
  const n = (shift + width + 7) >> 3;
  if (!big) {
    const div = 2 ** shift;
    const mod = 2 ** width;
    const half = 2 ** (width - 1);
    const [min, max] = numRange(width, signed);
    return {
      dec: (_dv, b, base) => {
        const at = base + byte;
        let v = 0;
        for (let i = n - 1; i >= 0; i--) v = v * 256 + b[at + i]!;
        v = Math.floor(v / div) % mod;
        return signed && v >= half ? v - mod : v;
      },
      enc: (v, out, base) => {
        const x = checkNumber(v, min, max, label);
        const c = (x < 0 ? x + mod : x) * div;
        const at = base + byte;
        for (let i = 0, s = 1; i < n; i++, s *= 256) out[at + i]! |= Math.floor(c / s) & 0xff;
      },
    };
  }
  const bshift = BigInt(shift);
  const [min, max] = bigRange(width, signed);
  return {
    dec: (_dv, b, base) => {
      const at = base + byte;
      let v = 0n;
      for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[at + i]!);
      v = BigInt.asUintN(width, v >> bshift);
      return signed ? BigInt.asIntN(width, v) : v;
    },
    enc: (v, out, base) => {
      let c = BigInt.asUintN(width, checkBigint(v, min, max, label)) << bshift;
      const at = base + byte;
      for (let i = 0; i < n; i++, c >>= 8n) out[at + i]! |= Number(c & 0xffn);
    },
  };
}

// ---- compilation ------------------------------------------------------------------------------

const QUALIFIERS = new Set(['const', 'volatile', 'restrict', 'type_tag']);
const CHAR_NAMES = new Set(['char', 'signed char', 'unsigned char']);

/** Enum value ↔ name tables, keyed by the value as decoded (number for ≤ 4 bytes, bigint beyond). */
interface EnumInfo {
  label: string;
  byValue: Map<number | bigint, string>;
  byName: Map<string, number | bigint>;
}

function enumInfo(t: Extract<BtfType, { kind: 'enum' | 'enum64' }>, big: boolean): EnumInfo {
  const byValue = new Map<number | bigint, string>();
  const byName = new Map<string, number | bigint>();
  const bits = t.size * 8;
  for (const e of t.values as { name: string; value: number | bigint }[]) {
    const raw = t.signed ? BigInt.asIntN(bits, BigInt(e.value)) : BigInt.asUintN(bits, BigInt(e.value));
    const key = big ? raw : Number(raw);
    if (!byValue.has(key)) byValue.set(key, e.name);
    if (!byName.has(e.name)) byName.set(e.name, key);
  }
  return { label: typeLabel(t), byValue, byName };
}

class Compiler {
  readonly #btf: Btf;
  readonly #nodes = new Map<number, Node>();
  readonly #visiting = new Set<number>();

  constructor(btf: Btf) {
    this.#btf = btf;
  }

  node(id: number): Node {
    const t = this.#btf.resolve(id);
    if (t.kind === 'var') return this.node(t.type);
    let n = this.#nodes.get(t.id);
    if (n) return n;
    if (this.#visiting.has(t.id)) throw new BtfError(`BTF type ${t.id} (${typeLabel(t)}) contains itself`);
    if (this.#visiting.size > 256) throw new BtfError(`BTF type ${t.id} is nested too deeply`);
    this.#visiting.add(t.id);
    try {
      n = this.#compile(t);
    } finally {
      this.#visiting.delete(t.id);
    }
    this.#nodes.set(t.id, n);
    return n;
  }

  #compile(t: BtfType): Node {
    switch (t.kind) {
      case 'int':
        return this.#int(t);
      case 'enum':
      case 'enum64':
        return this.#enum(t);
      case 'ptr': {
        const c = intCodec({ size: 8, signed: false }, 'a pointer')!;
        return { size: 8, label: 'a pointer', dec: c.dec, enc: rawOr(8, 'a pointer', c.enc), mask: fullMask(8) };
      }
      case 'float':
        return this.#float(t);
      case 'array':
        return this.#array(t);
      case 'struct':
      case 'union':
        return this.#composite(t.kind, typeLabel(t), t.size, t.members);
      case 'datasec':
        return this.#datasec(t);
      default:
        throw new BtfError(`BTF type ${t.id} (${typeLabel(t)}) has no size: no codec for it`);
    }
  }

  #int(t: Extract<BtfType, { kind: 'int' }>): Node {
    const size = t.size;
    if (t.bitsOffset !== 0 || t.bits !== size * 8) {
      // An int narrower than its storage: a bitfield inside its own bytes.
      const label = `a ${t.bits}-bit ${t.signed ? 'signed' : 'unsigned'} ${t.name}`;
      const bf = bitfield(t.bitsOffset, t.bits, t.signed, size > 4, label);
      let m: Uint8Array | undefined;
      return {
        size,
        label,
        dec: (dv, b, off) => (t.bool ? bf.dec(dv, b, off) != 0 : bf.dec(dv, b, off)),
        enc: rawOr(size, label, (v, out, _dv, off) => bf.enc(t.bool ? +checkBool(v) : v, out, off)),
        mask: () => {
          if (!m) setBits((m = new Uint8Array(size)), t.bitsOffset, t.bits);
          return m;
        },
      };
    }
    if (t.bool) {
      return {
        size,
        label: 'bool',
        dec:
          size === 1
            ? (dv, _b, off) => dv.getUint8(off) !== 0
            : (_dv, b, off) => {
                for (let i = 0; i < size; i++) if (b[off + i] !== 0) return true;
                return false;
              },
        enc: rawOr(size, 'bool', (v, out, _dv, off) => {
          if (checkBool(v)) out[off] = 1;
        }),
        mask: fullMask(size),
      };
    }
    const label = `${t.signed ? 's' : 'u'}${size * 8}`;
    const c = intCodec(t, label);
    if (!c) return rawNode(size, `${t.name} (${size}-byte int)`);
    return { size, label, dec: c.dec, enc: rawOr(size, label, c.enc), mask: fullMask(size) };
  }

  #enum(t: Extract<BtfType, { kind: 'enum' | 'enum64' }>): Node {
    const size = t.size;
    const big = size > 4;
    const label = typeLabel(t);
    const c = intCodec({ size, signed: t.signed }, label);
    if (!c) return rawNode(size, label);
    const info = enumInfo(t, big);
    return {
      size,
      label,
      dec: (dv, b, off, names) => {
        const v = c.dec(dv, b, off, names) as number | bigint;
        return names ? (info.byValue.get(v) ?? v) : v;
      },
      enc: rawOr(size, label, (v, out, dv, off) => c.enc(enumValue(info, v), out, dv, off)),
      mask: fullMask(size),
    };
  }

  #float(t: Extract<BtfType, { kind: 'float' }>): Node {
    const size = t.size;
    const label = t.name || `float${size * 8}`;
    if (size === 4) {
      return {
        size,
        label,
        dec: (dv, _b, off) => dv.getFloat32(off, true),
        enc: rawOr(size, label, (v, _o, dv, off) => {
          if (typeof v !== 'number') fail(`expected a number for ${label}, got ${describe(v)}`);
          if (Number.isFinite(v) && !Number.isFinite(Math.fround(v))) fail(`${v} does not fit ${label} (f32)`);
          dv.setFloat32(off, v, true);
        }),
        mask: fullMask(size),
      };
    }
    if (size === 8) {
      return {
        size,
        label,
        dec: (dv, _b, off) => dv.getFloat64(off, true),
        enc: rawOr(size, label, (v, _o, dv, off) => {
          if (typeof v !== 'number') fail(`expected a number for ${label}, got ${describe(v)}`);
          dv.setFloat64(off, v, true);
        }),
        mask: fullMask(size),
      };
    }
    return rawNode(size, label);
  }

  #isChar(id: number): boolean {
    let t = this.#btf.type(id);
    for (let hops = 0; QUALIFIERS.has(t.kind) && hops < 64; hops++) t = this.#btf.type((t as { type: number }).type);
    return t.kind === 'int' && t.size === 1 && t.bits === 8 && !t.bool && (t.char || CHAR_NAMES.has(t.name));
  }

  #array(t: Extract<BtfType, { kind: 'array' }>): Node {
    const count = t.nelems;
    if (this.#isChar(t.type)) return stringNode(count);
    const elem = this.node(t.type);
    const es = elem.size;
    const size = es * count;
    if (!Number.isSafeInteger(size)) throw new BtfError(`size of BTF type ${t.id} overflows`);
    const label = `${elem.label}[${count}]`;
    const edec = elem.dec;
    const eenc = elem.enc;
    let m: Uint8Array | undefined;
    return {
      size,
      label,
      dec: (dv, b, off, names) => {
        const a = new Array<unknown>(count);
        for (let i = 0; i < count; i++) a[i] = edec(dv, b, off + i * es, names);
        return a;
      },
      enc: rawOr(size, label, (v, out, dv, off) => {
        if (!Array.isArray(v) && !(ArrayBuffer.isView(v) && !(v instanceof DataView))) {
          fail(`expected an array for ${label}, got ${describe(v)}`);
        }
        const a = v as ArrayLike<unknown>;
        if (a.length > count) fail(`${a.length} elements do not fit ${label}`);
        for (let i = 0; i < a.length; i++) {
          const x = a[i];
          if (x === undefined) continue;
          try {
            eenc(x, out, dv, off + i * es);
          } catch (e) {
            throw prefixed(e, `[${i}]`);
          }
        }
      }),
      mask: () => {
        if (!m) {
          m = new Uint8Array(size);
          const em = elem.mask();
          for (let i = 0; i < count; i++) m.set(em, i * es);
        }
        return m;
      },
    };
  }

  #member(m: BtfMember, parentSize: number, where: string): Entry | undefined {
    const t = this.#btf.resolve(m.type);
    const name = m.name;
    let width = m.bitfieldSize;
    let pos = m.bitOffset;
    if (width === 0 && t.kind === 'int' && (t.bitsOffset !== 0 || t.bits !== t.size * 8 || pos % 8 !== 0)) {
      // kind_flag 0: the int type carries the bitfield's width and offset.
      width = t.bits;
      pos += t.bitsOffset;
    }
    if (width !== 0) {
      if (t.kind !== 'int' && t.kind !== 'enum' && t.kind !== 'enum64') {
        throw new BtfError(`${where}: bitfield ${name || '(anonymous)'} has type ${typeLabel(t)}`);
      }
      if (width > t.size * 8 || pos + width > parentSize * 8) {
        throw new BtfError(`${where}: bitfield ${name || '(anonymous)'} does not fit`);
      }
      if (name === '') return undefined; // unnamed padding bitfield (`int :3`)
      const big = t.size > 4;
      const label = `a ${width}-bit ${t.signed ? 'signed' : 'unsigned'} bitfield`;
      const bf = bitfield(pos, width, t.signed, big, label);
      const isBool = t.kind === 'int' && t.bool;
      const info = t.kind === 'enum' || t.kind === 'enum64' ? enumInfo(t, big) : undefined;
      const bdec = bf.dec;
      const benc = bf.enc;
      const decInto: Entry['decInto'] = isBool
        ? (obj, dv, b, base) => setProp(obj, name, bdec(dv, b, base) != 0)
        : info
          ? (obj, dv, b, base, names) => {
              const v = bdec(dv, b, base);
              setProp(obj, name, names ? (info.byValue.get(v) ?? v) : v);
            }
          : (obj, dv, b, base) => setProp(obj, name, bdec(dv, b, base));
      return {
        names: [name],
        decInto,
        encFrom: (src, out, _dv, base) => {
          const v = hasOwn(src, name) ? src[name] : undefined;
          if (v === undefined) return;
          try {
            benc(isBool ? +checkBool(v) : info ? enumValue(info, v) : v, out, base);
          } catch (e) {
            throw prefixed(e, '.' + name);
          }
        },
        cover: (mask) => setBits(mask, pos, width),
      };
    }
    if (pos % 8 !== 0) throw new BtfError(`${where}: member ${name || '(anonymous)'} is not byte-aligned`);
    const at = pos / 8;
    const node = this.node(m.type);
    if (at + node.size > parentSize) throw new BtfError(`${where}: member ${name || '(anonymous)'} ends past the end`);
    if (name === '') {
      if (t.kind !== 'struct' && t.kind !== 'union') return undefined;
      const c = node as Composite;
      return {
        names: c.names,
        decInto: (obj, dv, b, base, names) => c.decInto(obj, dv, b, base + at, names),
        encFrom: (src, out, dv, base) => c.encFrom(src, out, dv, base + at),
        cover: (mask) => orInto(mask, c.mask(), at),
      };
    }
    const dec = node.dec;
    const enc = node.enc;
    return {
      names: [name],
      decInto:
        name === '__proto__'
          ? (obj, dv, b, base, names) => setProp(obj, name, dec(dv, b, base + at, names))
          : (obj, dv, b, base, names) => {
              obj[name] = dec(dv, b, base + at, names);
            },
      encFrom: (src, out, dv, base) => {
        const v = hasOwn(src, name) ? src[name] : undefined;
        if (v === undefined) return;
        try {
          enc(v, out, dv, base + at);
        } catch (e) {
          throw prefixed(e, '.' + name);
        }
      },
      cover: (mask) => orInto(mask, node.mask(), at),
    };
  }

  #composite(kind: 'struct' | 'union' | 'datasec', label: string, size: number, members: BtfMember[]): Composite {
    const entries: Entry[] = [];
    for (const m of members) {
      const e = this.#member(m, size, label);
      if (e) entries.push(e);
    }
    const names = entries.flatMap((e) => e.names);
    const nameSet = new Set(names);
    const decInto: Composite['decInto'] = (obj, dv, b, off, n) => {
      for (let i = 0; i < entries.length; i++) entries[i]!.decInto(obj, dv, b, off, n);
    };
    const encFrom = kind === 'union' ? unionEncoder(label, size, entries) : structEncoder(entries);
    let mask: Uint8Array | undefined;
    return {
      size,
      label,
      names,
      decInto,
      encFrom,
      dec: (dv, b, off, n) => {
        const obj: Record<string, unknown> = {};
        decInto(obj, dv, b, off, n);
        return obj;
      },
      enc: rawOr(size, label, (v, out, dv, off) => {
        if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) {
          fail(`expected an object for ${label}, got ${describe(v)}`);
        }
        const src = v as Record<string, unknown>;
        for (const k of Object.keys(src)) {
          if (!nameSet.has(k)) fail(`${label} has no member ${JSON.stringify(k)}`);
        }
        encFrom(src, out, dv, off);
      }),
      mask: () => {
        if (!mask) {
          mask = new Uint8Array(size);
          for (const e of entries) e.cover(mask);
        }
        return mask;
      },
    };
  }

  #datasec(t: Extract<BtfType, { kind: 'datasec' }>): Composite {
    const members: BtfMember[] = [];
    for (const v of t.vars) {
      const vt = this.#btf.type(v.type);
      if (vt.kind !== 'var') continue; // functions in .ksyms
      members.push({ name: vt.name, type: vt.type, bitOffset: v.offset * 8, bitfieldSize: 0 });
    }
    return this.#composite('datasec', typeLabel(t), t.size, members);
  }
}

function structEncoder(entries: Entry[]): Composite['encFrom'] {
  return (src, out, dv, off) => {
    for (let i = 0; i < entries.length; i++) entries[i]!.encFrom(src, out, dv, off);
  };
}

/**
 * A union's members all start at its first byte. One given member is encoded as is; several must agree
 * on every bit they share (e.g. a decoded union given back), the result is their combination.
 */
function unionEncoder(label: string, size: number, entries: Entry[]): Composite['encFrom'] {
  const masks: (Uint8Array | undefined)[] = new Array(entries.length);
  const maskOf = (i: number): Uint8Array => {
    let m = masks[i];
    if (!m) entries[i]!.cover((m = masks[i] = new Uint8Array(size)));
    return m;
  };
  const given = (src: Record<string, unknown>, e: Entry): boolean =>
    e.names.some((n) => hasOwn(src, n) && src[n] !== undefined);
  return (src, out, dv, off) => {
    let first = -1;
    let several = false;
    for (let i = 0; i < entries.length; i++) {
      if (!given(src, entries[i]!)) continue;
      if (first < 0) first = i;
      else several = true;
    }
    if (first < 0) return;
    if (!several) {
      entries[first]!.encFrom(src, out, dv, off);
      return;
    }
    const acc = Buffer.alloc(size);
    const seen = new Uint8Array(size);
    const owner = new Int32Array(size).fill(-1);
    for (let i = first; i < entries.length; i++) {
      const e = entries[i]!;
      if (!given(src, e)) continue;
      const scratch = Buffer.alloc(size);
      e.encFrom(src, scratch, new DataView(scratch.buffer, scratch.byteOffset, size), 0);
      const m = maskOf(i);
      for (let k = 0; k < size; k++) {
        const mk = m[k]!;
        if (mk === 0) continue;
        if ((acc[k]! ^ scratch[k]!) & seen[k]! & mk) {
          const other = entries[owner[k]!]!.names[0];
          fail(`members ${JSON.stringify(other)} and ${JSON.stringify(e.names[0])} of ${label} disagree at byte ${k}: give one of them`);
        }
        acc[k]! |= scratch[k]! & mk;
        seen[k]! |= mk;
        owner[k] = i;
      }
    }
    acc.copy(out, off);
  };
}

function checkBool(v: unknown): boolean {
  if (typeof v !== 'boolean') fail(`expected a boolean for bool, got ${describe(v)}`);
  return v;
}

function enumValue(info: EnumInfo, v: unknown): unknown {
  if (typeof v !== 'string') return v;
  const x = info.byName.get(v);
  if (x === undefined) fail(`${info.label} has no value named ${JSON.stringify(v)}`);
  return x;
}

function stringNode(count: number): Node {
  const label = `char[${count}]`;
  return {
    size: count,
    label,
    dec: (_dv, b, off) => {
      let end = off;
      let high = 0;
      const limit = off + count;
      for (let c: number; end < limit && (c = b[end]!) !== 0; end++) high |= c;
      if (end === off) return '';
      // Short ASCII (comm, names): building the string here beats a call into Buffer#toString.
      if (high < 0x80 && end - off <= 32) {
        let s = '';
        for (let i = off; i < end; i++) s += String.fromCharCode(b[i]!);
        return s;
      }
      return b.toString('utf8', off, end);
    },
    enc: rawOr(count, label, (v, out, _dv, off) => {
      if (typeof v !== 'string') fail(`expected a string for ${label}, got ${describe(v)}`);
      if (v.includes('\0')) fail(`${describe(v)} contains a NUL, which ${label} cannot hold`);
      const n = Buffer.byteLength(v, 'utf8');
      if (n >= count && n > 0) fail(`${describe(v)} is ${n} bytes, ${label} holds at most ${Math.max(0, count - 1)} plus a NUL`);
      out.write(v, off, n, 'utf8');
    }),
    mask: fullMask(count),
  };
}

// ---- public API -------------------------------------------------------------------------------

const compilers = new WeakMap<Btf, Compiler>();

function compilerFor(btf: Btf): Compiler {
  let c = compilers.get(btf);
  if (!c) compilers.set(btf, (c = new Compiler(btf)));
  return c;
}

function asBuffer(buf: Uint8Array): Buffer {
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Converts the bytes of a value of one BTF type to a JS value and back (see the top of this file). */
export class Codec {
  readonly btf: Btf;
  readonly typeId: number;
  /** Size in bytes of a value of the type. */
  readonly size: number;
  readonly #node: Node;

  /** Throws BtfError for types without a size (void, func, fwd, func_proto, ...). */
  constructor(btf: Btf, typeId: number) {
    this.btf = btf;
    this.typeId = typeId;
    this.#node = compilerFor(btf).node(typeId);
    this.size = this.#node.size;
  }

  /** Decodes the `size` bytes at `offset` of `buf`. */
  decode(buf: Uint8Array, offset = 0, o?: DecodeOptions): unknown {
    if (!(buf instanceof Uint8Array)) throw new TypeError(`expected a Buffer or Uint8Array, got ${describe(buf)}`);
    if (!Number.isInteger(offset) || offset < 0 || offset + this.size > buf.length) {
      throw new TypeError(`cannot decode ${this.size} bytes at offset ${offset} of a ${buf.length}-byte buffer`);
    }
    const b = asBuffer(buf);
    return this.#node.dec(new DataView(b.buffer, b.byteOffset, b.byteLength), b, offset, o?.enumNames === true);
  }

  /**
   * Encodes `value` into `out` at `offset` (the `size` bytes there are zeroed first: missing members
   * are zero), or into a new Buffer of `size` bytes. Returns the buffer written. Throws TypeError,
   * naming the field (`value.slots[3]: ...`), for values that do not fit the type.
   */
  encode(value: unknown, out?: Buffer, offset = 0): Buffer {
    let target: Buffer;
    if (out === undefined) {
      target = Buffer.alloc(this.size);
      offset = 0;
    } else {
      if (!(out instanceof Uint8Array)) throw new TypeError(`expected a Buffer to encode into, got ${describe(out)}`);
      if (!Number.isInteger(offset) || offset < 0 || offset + this.size > out.length) {
        throw new TypeError(`cannot encode ${this.size} bytes at offset ${offset} of a ${out.length}-byte buffer`);
      }
      target = asBuffer(out);
    }
    // Encode into scratch space so that a refused value leaves `out` untouched.
    const scratch = out === undefined ? target : Buffer.alloc(this.size);
    try {
      this.#node.enc(value, scratch, new DataView(scratch.buffer, scratch.byteOffset, scratch.byteLength), 0);
    } catch (e) {
      if (e instanceof EncodeFailure) throw new TypeError(`value${e.path}: ${e.detail}`);
      throw e;
    }
    if (scratch !== target) scratch.copy(target, offset);
    return out === undefined ? target : out;
  }
}

const codecs = new WeakMap<Btf, Map<number, Codec>>();

/** The Codec of `typeId` in `btf`, built once per (btf, typeId). */
export function codecFor(btf: Btf, typeId: number): Codec {
  let m = codecs.get(btf);
  if (!m) codecs.set(btf, (m = new Map()));
  let c = m.get(typeId);
  if (!c) m.set(typeId, (c = new Codec(btf, typeId)));
  return c;
}
