// Reading and writing global variables in a CollectionSpec, before load: the
// bytes live in the initial contents of the global data maps (.data, .rodata,
// .bss, ...), so setting a `const volatile` in .rodata here is how a user
// configures a program before the kernel sees it.

import type { Btf } from '../btf/btf.js';
import type { BtfType } from '../btf/types.js';
import { TsbpfError } from '../errors.js';
import type { CollectionSpec, VariableSpec } from './spec.js';

export type VariableValue = Buffer | number | bigint | boolean | string;

function lookup(spec: CollectionSpec, name: string): { v: VariableSpec; data: Buffer } {
  const v = Object.prototype.hasOwnProperty.call(spec.variables, name) ? spec.variables[name] : undefined;
  if (!v) {
    const known = Object.keys(spec.variables);
    throw new TsbpfError(
      `no global variable ${JSON.stringify(name)} in ${spec.objectName}; known variables: ${known.length ? known.join(', ') : '(none)'}`,
    );
  }
  const map = spec.maps[v.map];
  const entry = map?.contents.find((e) => Buffer.isBuffer(e.value));
  const data = entry?.value;
  if (!Buffer.isBuffer(data) || v.offset + v.size > data.length) {
    throw new TsbpfError(`variable ${name}: its data map ${v.map} has no initial value covering it`);
  }
  return { v, data };
}

/** A copy of the variable's current bytes in the spec. */
export function getVariable(spec: CollectionSpec, name: string): Buffer {
  const { v, data } = lookup(spec, name);
  return Buffer.from(data.subarray(v.offset, v.offset + v.size));
}

/**
 * Sets a variable's initial value in the spec (its data map's contents).
 * - Buffer: raw bytes, exactly the variable's size.
 * - number / bigint / boolean: encoded by the variable's BTF type (integers of
 *   1, 2, 4, 8 or 16 bytes with their signedness, enums, bool, float/double),
 *   range-checked. Without BTF the value is written as an integer of the
 *   variable's size (two's complement for negative values).
 * - string: into a `char[N]` array, UTF-8, NUL-padded, at most N-1 bytes so
 *   that it stays NUL-terminated; or the name of an enumerator for enums.
 * Wrong JavaScript types and sizes throw TypeError, out-of-range numbers RangeError.
 */
export function setVariable(spec: CollectionSpec, name: string, value: VariableValue): void {
  const { v, data } = lookup(spec, name);
  const bytes = encode(spec.btf, v, value);
  bytes.copy(data, v.offset);
}

/** Bytes of `value` for variable `v`, by the rules of setVariable (also used for live globals). */
export function encodeVariable(btf: Btf | undefined, v: VariableSpec, value: VariableValue): Buffer {
  return encode(btf, v, value);
}

function encode(btf: Btf | undefined, v: VariableSpec, value: VariableValue): Buffer {
  const what = `variable ${v.name}`;
  if (Buffer.isBuffer(value)) {
    if (value.length !== v.size) {
      throw new TypeError(`${what} is ${v.size} bytes, got a Buffer of ${value.length}`);
    }
    return value;
  }
  if (!['number', 'bigint', 'boolean', 'string'].includes(typeof value)) {
    throw new TypeError(`${what}: expected a Buffer, number, bigint, boolean or string, got ${describe(value)}`);
  }
  const t: BtfType | undefined = btf && v.type !== 0 ? btf.resolve(v.type) : undefined;
  if (!t) {
    if (typeof value === 'string') return encodeString(what, value, v.size);
    return encodeInt(what, toBigInt(what, value), v.size, undefined);
  }
  switch (t.kind) {
    case 'int':
      if (typeof value === 'string') {
        throw new TypeError(`${what} is an integer (${t.name}), got a string`);
      }
      if (t.bool && typeof value !== 'boolean' && value !== 0 && value !== 1 && value !== 0n && value !== 1n) {
        throw new RangeError(`${what} is a bool: expected true, false, 0 or 1, got ${String(value)}`);
      }
      return encodeInt(what, toBigInt(what, value), t.size, t.signed, v.size);
    case 'enum':
    case 'enum64': {
      let n: bigint;
      if (typeof value === 'string') {
        const e = (t.values as { name: string; value: number | bigint }[]).find((x) => x.name === value);
        if (!e) {
          throw new RangeError(`${what}: enum ${t.name || '(anonymous)'} has no value named ${JSON.stringify(value)}`);
        }
        n = BigInt(e.value);
      } else {
        n = toBigInt(what, value);
      }
      return encodeInt(what, n, t.size, t.signed, v.size);
    }
    case 'ptr':
      if (typeof value === 'string') throw new TypeError(`${what} is a pointer, got a string`);
      return encodeInt(what, toBigInt(what, value), 8, false, v.size);
    case 'float': {
      if (typeof value !== 'number') throw new TypeError(`${what} is a ${t.name}: expected a number, got ${describe(value)}`);
      if (t.size !== v.size || (t.size !== 4 && t.size !== 8)) {
        throw new TypeError(`${what}: cannot encode a ${t.size}-byte float, pass a Buffer`);
      }
      const b = Buffer.alloc(t.size);
      if (t.size === 4) b.writeFloatLE(value);
      else b.writeDoubleLE(value);
      return b;
    }
    case 'array': {
      const elem = btf!.resolve(t.type);
      if (typeof value === 'string' && elem.kind === 'int' && elem.size === 1) {
        return encodeString(what, value, v.size);
      }
      throw new TypeError(`${what} is an array: pass a Buffer of ${v.size} bytes${elem.kind === 'int' && elem.size === 1 ? ' or a string' : ''}`);
    }
    default:
      throw new TypeError(`${what} is a ${t.kind}${t.name ? ' ' + t.name : ''}: pass a Buffer of ${v.size} bytes`);
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value;
}

function toBigInt(what: string, value: number | bigint | boolean | string): bigint {
  if (typeof value === 'boolean') return value ? 1n : 0n;
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new RangeError(`${what}: ${value} is not an integer`);
    if (!Number.isSafeInteger(value)) {
      throw new RangeError(`${what}: ${value} is beyond Number.MAX_SAFE_INTEGER, pass a bigint`);
    }
    return BigInt(value);
  }
  throw new TypeError(`${what}: expected a number, bigint or boolean, got a string`);
}

/**
 * Little-endian integer of `size` bytes. `signed` undefined (no BTF) accepts
 * both signed and unsigned ranges.
 */
function encodeInt(what: string, n: bigint, size: number, signed: boolean | undefined, varSize = size): Buffer {
  if (size !== varSize) {
    throw new TypeError(`${what}: its type is ${size} bytes but the variable is ${varSize}, pass a Buffer`);
  }
  if (![1, 2, 4, 8, 16].includes(size)) {
    throw new TypeError(`${what} is ${size} bytes, which is not an integer size: pass a Buffer`);
  }
  const bits = BigInt(size * 8);
  const min = signed === false ? 0n : -(1n << (bits - 1n));
  const max = signed === true ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  if (n < min || n > max) {
    const kind = signed === undefined ? `${size}-byte integer` : `${signed ? 'signed' : 'unsigned'} ${size}-byte integer`;
    throw new RangeError(`${what}: ${n} does not fit a ${kind} (${min}..${max})`);
  }
  const u = BigInt.asUintN(size * 8, n);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = Number((u >> BigInt(8 * i)) & 0xffn);
  return b;
}

function encodeString(what: string, s: string, size: number): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length >= size) {
    throw new RangeError(`${what} holds at most ${size - 1} bytes plus a NUL, got a ${bytes.length}-byte string`);
  }
  const b = Buffer.alloc(size);
  bytes.copy(b);
  return b;
}
