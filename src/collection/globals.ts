// Live global variables: `.data`, `.bss` (read/write) and `.rodata` (read-only) of a loaded collection,
// read and written through an mmap of the data map when the kernel allows it (BPF_F_MMAPABLE, 5.5+),
// without a syscall per access; through map lookup/update otherwise.
//
// No Buffer over the mapping is ever handed out: every access goes through a method that first checks
// the mapping is still there, so a use after close() throws ClosedError instead of reading the zeros of
// the placeholder that Mapping.unmap() leaves behind.

import { Mapping, mmap, pageSize, PROT_READ, PROT_WRITE } from '../syscall/index.js';
import { ClosedError, TsbpfError } from '../errors.js';
import type { Btf } from '../btf/btf.js';
import type { CollectionSpec, VariableSpec } from '../elf/spec.js';
import { encodeVariable, type VariableValue } from '../elf/variables.js';
import type { BpfMap } from '../maps/map.js';

const BPF_F_MMAPABLE = 1 << 10;

/** One data map's backing store: an mmap of its value, or syscalls. */
class DataStore {
  readonly map: BpfMap;
  readonly writable: boolean;
  #mapping: Mapping | undefined;
  /** Word views over the whole mapping, made once; internal only, dropped on close. */
  #u32: Uint32Array | undefined;
  #u64: BigUint64Array | undefined;
  #closed = false;

  constructor(map: BpfMap, writable: boolean) {
    this.map = map;
    this.writable = writable;
    if (map.flags & BPF_F_MMAPABLE) {
      const len = Math.ceil(map.valueSize / pageSize()) * pageSize();
      // A frozen map (.rodata) can only be mapped read-only; the kernel refuses PROT_WRITE for it.
      this.#mapping = mmap(map.fd, len, writable ? PROT_READ | PROT_WRITE : PROT_READ, 0, `map "${map.name}": mmap`);
      const v = this.#mapping.view;
      this.#u32 = new Uint32Array(v.buffer, v.byteOffset, len / 4);
      this.#u64 = new BigUint64Array(v.buffer, v.byteOffset, len / 8);
    }
  }

  get mmapped(): boolean {
    return this.#mapping !== undefined;
  }

  #view(what: string): Buffer {
    if (this.#closed) throw new ClosedError(`${what}: the collection is closed`);
    return this.#mapping!.view;
  }

  read(what: string, offset: number, size: number, into?: Uint8Array, intoOff = 0): Buffer {
    const out = into ? Buffer.from(into.buffer, into.byteOffset, into.byteLength) : Buffer.alloc(size);
    const dst = into ? intoOff : 0;
    if (this.#mapping) {
      out.set(this.#view(what).subarray(offset, offset + size), dst);
    } else {
      if (this.#closed) throw new ClosedError(`${what}: the collection is closed`);
      const v = this.map.lookup(0);
      if (!v) throw new TsbpfError(`${what}: data map "${this.map.name}" has no value`);
      out.set(v.subarray(offset, offset + size), dst);
    }
    return out;
  }

  /**
   * One aligned 4- or 8-byte scalar, loaded with Atomics.load so a concurrent update by a program on
   * another CPU can't be seen half-written (a byte-wise Buffer read could tear).
   */
  loadScalar(what: string, offset: number, size: 4 | 8): number | bigint {
    this.#view(what); // throws after close
    if (size === 8) return Atomics.load(this.#u64!, offset / 8);
    return Atomics.load(this.#u32!, offset / 4);
  }

  write(what: string, offset: number, bytes: Uint8Array): void {
    if (!this.writable) throw new TsbpfError(`${what} is read-only after load (.rodata is frozen); set it on the spec before loading`);
    if (this.#mapping) {
      const v = this.#view(what);
      if (bytes.length === 4 && offset % 4 === 0) {
        // Single aligned store: a program reading concurrently sees the old or the new value, never a mix.
        Atomics.store(this.#u32!, offset / 4, Buffer.from(bytes.buffer, bytes.byteOffset, 4).readUInt32LE(0));
      } else if (bytes.length === 8 && offset % 8 === 0) {
        Atomics.store(this.#u64!, offset / 8, Buffer.from(bytes.buffer, bytes.byteOffset, 8).readBigUInt64LE(0));
      } else {
        v.set(bytes, offset);
      }
      return;
    }
    if (this.#closed) throw new ClosedError(`${what}: the collection is closed`);
    const cur = this.map.lookup(0)!;
    cur.set(bytes, offset);
    this.map.update(0, cur);
  }

  close(): void {
    this.#closed = true;
    this.#u32 = this.#u64 = undefined;
    this.#mapping?.unmap();
    this.#mapping = undefined;
  }
}

/** A global variable of a loaded collection. */
export class GlobalVariable {
  readonly name: string;
  readonly size: number;
  readonly readonly: boolean;
  /** BTF type id in the object's BTF (0 without BTF). */
  readonly type: number;
  readonly #spec: VariableSpec;
  readonly #store: DataStore;
  readonly #btf: Btf | undefined;

  constructor(spec: VariableSpec, store: DataStore, btf: Btf | undefined) {
    this.name = spec.name;
    this.size = spec.size;
    this.readonly = !store.writable;
    this.type = spec.type;
    this.#spec = spec;
    this.#store = store;
    this.#btf = btf;
  }

  /** true when reads and writes go through an mmap (no syscall). */
  get live(): boolean {
    return this.#store.mmapped;
  }

  /** A copy of the current bytes. */
  get(): Buffer {
    return this.#store.read(`variable "${this.name}"`, this.#spec.offset, this.size);
  }

  /** Copy the current bytes into `into` (no allocation). */
  readInto(into: Uint8Array, offset = 0): void {
    if (!(into instanceof Uint8Array) || into.length - offset < this.size) {
      throw new TypeError(`variable "${this.name}": readInto needs a Uint8Array with ${this.size} bytes free`);
    }
    this.#store.read(`variable "${this.name}"`, this.#spec.offset, this.size, into, offset);
  }

  /**
   * The value as a JS scalar when it is one: integers of up to 4 bytes as numbers, 8 bytes as bigint
   * (both read with a single atomic load when aligned, no syscall, no allocation for numbers);
   * otherwise a copy of the bytes.
   */
  get value(): number | bigint | boolean | Buffer {
    const t = this.#scalar();
    const off = this.#spec.offset;
    const what = `variable "${this.name}"`;
    if (t && this.#store.mmapped && (this.size === 4 || this.size === 8) && off % this.size === 0) {
      const raw = this.#store.loadScalar(what, off, this.size);
      if (t === 'bool') return raw !== 0 && raw !== 0n;
      if (t === 'signed') return this.size === 8 ? BigInt.asIntN(64, raw as bigint) : (raw as number) | 0;
      return raw;
    }
    const b = this.get();
    if (!t) return b;
    if (t === 'bool') return b.some((x) => x !== 0);
    switch (this.size) {
      case 1:
        return t === 'signed' ? b.readInt8(0) : b.readUInt8(0);
      case 2:
        return t === 'signed' ? b.readInt16LE(0) : b.readUInt16LE(0);
      case 4:
        return t === 'signed' ? b.readInt32LE(0) : b.readUInt32LE(0);
      case 8:
        return t === 'signed' ? b.readBigInt64LE(0) : b.readBigUInt64LE(0);
      default:
        return b;
    }
  }

  /** Write a new value (same encodings as setVariable: Buffer, number, bigint, boolean, string). */
  set(value: VariableValue): void {
    const bytes = encodeVariable(this.#btf, this.#spec, value);
    this.#store.write(`variable "${this.name}"`, this.#spec.offset, bytes);
  }

  #scalar(): 'signed' | 'unsigned' | 'bool' | undefined {
    if (!this.#btf || !this.type) return this.size <= 8 && [1, 2, 4, 8].includes(this.size) ? 'unsigned' : undefined;
    const t = this.#btf.resolve(this.type);
    if (t.kind === 'int') return t.bool ? 'bool' : t.signed ? 'signed' : 'unsigned';
    if (t.kind === 'enum' || t.kind === 'enum64') return t.signed ? 'signed' : 'unsigned';
    return undefined;
  }
}

/** The live globals of a collection, by variable name; close() unmaps everything. */
export class Globals {
  readonly variables: Record<string, GlobalVariable> = {};
  readonly #stores: DataStore[] = [];

  constructor(spec: CollectionSpec, maps: Record<string, BpfMap>) {
    const stores = new Map<string, DataStore>();
    try {
      for (const v of Object.values(spec.variables)) {
        const map = maps[v.map];
        if (!map) continue;
        let store = stores.get(v.map);
        if (!store) {
          store = new DataStore(map, !spec.maps[v.map]?.freeze);
          stores.set(v.map, store);
          this.#stores.push(store);
        }
        this.variables[v.name] = new GlobalVariable(v, store, spec.btf);
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  close(): void {
    for (const s of this.#stores) s.close();
  }
}
