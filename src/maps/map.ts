// A BPF map in the kernel. Keys and values are bytes (Buffer/Uint8Array),
// with sizes checked before anything reaches the kernel; 4- and 8-byte keys
// may also be given as numbers or bigints (little-endian), which covers array
// indices. Per-CPU maps take and return one value per possible CPU.

import {
  BPF_MAP_TYPE, FD, mapCreate, mapDelete, mapFreeze, mapLookup, mapNextKey, mapUpdate, objGetInfo, objPin, objGet,
  getFdById, mapPeekValue, layoutSize, readU32, readU64, readBytesField, possibleCpus, BpfError, E,
} from '../syscall/index.js';
import { ClosedError, TsbpfError, describeArgument } from '../errors.js';
import { checkBpffsPath, unpin } from './pin.js';
import { lookupBatch } from './batch.js';
import type { Btf } from '../btf/btf.js';
import { codecFor, type Codec, type DecodeOptions } from '../btf/codec.js';

export const MapType = BPF_MAP_TYPE;

/** BPF_ANY / BPF_NOEXIST / BPF_EXIST / BPF_F_LOCK flags for update(). */
export const UpdateFlags = { ANY: 0, NOEXIST: 1, EXIST: 2, LOCK: 4 } as const;

const PERCPU_TYPES = new Set<number>([
  BPF_MAP_TYPE.PERCPU_HASH,
  BPF_MAP_TYPE.PERCPU_ARRAY,
  BPF_MAP_TYPE.LRU_PERCPU_HASH,
  BPF_MAP_TYPE.PERCPU_CGROUP_STORAGE,
]);

export function isPerCpu(type: number): boolean {
  return PERCPU_TYPES.has(type);
}

const TYPE_NAMES = new Map<number, string>(Object.entries(BPF_MAP_TYPE).map(([k, v]) => [v as number, k]));
export function mapTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `UNKNOWN(${type})`;
}

export type KeyLike = Uint8Array | number | bigint;

export interface MapInfo {
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
  btfId: number;
  btfKeyTypeId: number;
  btfValueTypeId: number;
  mapExtra: bigint;
}

export interface MapCreateOptions {
  name?: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  numaNode?: number;
  mapExtra?: bigint;
  innerMap?: BpfMap;
  btfFd?: number;
  btfKeyTypeId?: number;
  btfValueTypeId?: number;
  /** For STRUCT_OPS maps: the vmlinux BTF id of the `bpf_struct_ops_<name>` value type (needs btfFd too). */
  btfVmlinuxValueTypeId?: number;
}

/** Info of any map fd. */
export function readMapInfo(fd: number): MapInfo {
  const L = 'bpf_map_info' as const;
  const { info } = objGetInfo(fd, layoutSize(L));
  const nameBytes = readBytesField(info, 0, L, 'name');
  const z = nameBytes.indexOf(0);
  return {
    id: readU32(info, 0, L, 'id'),
    type: readU32(info, 0, L, 'type'),
    keySize: readU32(info, 0, L, 'key_size'),
    valueSize: readU32(info, 0, L, 'value_size'),
    maxEntries: readU32(info, 0, L, 'max_entries'),
    flags: readU32(info, 0, L, 'map_flags'),
    name: nameBytes.toString('utf8', 0, z < 0 ? nameBytes.length : z),
    btfId: readU32(info, 0, L, 'btf_id'),
    btfKeyTypeId: readU32(info, 0, L, 'btf_key_type_id'),
    btfValueTypeId: readU32(info, 0, L, 'btf_value_type_id'),
    mapExtra: readU64(info, 0, L, 'map_extra'),
  };
}

export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  #fd: FD;
  #possible: number;
  #scratchKey: Buffer;
  #keyCodec: Codec | undefined;
  #valueCodec: Codec | undefined;
  #btf: Btf | undefined;

  /** Take ownership of `fd`; the description is read from the kernel when not given. */
  constructor(fd: FD, desc?: { name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }) {
    const d = desc ?? readMapInfo(fd.value);
    this.#fd = fd;
    this.name = d.name;
    this.type = d.type;
    this.keySize = d.keySize;
    this.valueSize = d.valueSize;
    this.maxEntries = d.maxEntries;
    this.flags = d.flags;
    this.#possible = isPerCpu(d.type) ? possibleCpus().length : 1;
    this.#scratchKey = Buffer.alloc(Math.max(this.keySize, 8));
  }

  /**
   * Give the map BTF types for its key and value, enabling get()/set()/decodedEntries() with JS values.
   * Collection does this for maps whose definition names `__type(key, ...)` / `__type(value, ...)`.
   */
  setTypes(btf: Btf, keyType?: number, valueType?: number): this {
    const k = keyType ? codecFor(btf, keyType) : undefined;
    const v = valueType ? codecFor(btf, valueType) : undefined;
    if (k && k.size !== this.keySize) throw new TsbpfError(`${this.#ctx()}: BTF key type is ${k.size} bytes, the key size is ${this.keySize}`);
    if (v && v.size !== this.valueSize) throw new TsbpfError(`${this.#ctx()}: BTF value type is ${v.size} bytes, the value size is ${this.valueSize}`);
    this.#keyCodec = k;
    this.#valueCodec = v;
    this.#btf = btf;
    return this;
  }

  /**
   * The BTF of the object this map was loaded from (Collection sets it), where readers look up the type
   * named by `decode`. Undefined for maps made by hand, from an id or from a pin.
   */
  get btf(): Btf | undefined {
    return this.#btf;
  }

  /** Key and value codecs, when the map has BTF types. */
  get codecs(): { key?: Codec; value?: Codec } {
    return { key: this.#keyCodec, value: this.#valueCodec };
  }

  #encodeKey(key: unknown): KeyLike {
    if (key instanceof Uint8Array || typeof key === 'number' || typeof key === 'bigint') {
      if (!this.#keyCodec || key instanceof Uint8Array) return key as KeyLike;
    }
    if (!this.#keyCodec) throw new TypeError(`${this.#ctx()}: the map has no BTF key type; pass the key as a Buffer`);
    return this.#keyCodec.encode(key);
  }

  #decodeValue(v: Buffer, o?: DecodeOptions): unknown {
    if (!this.#valueCodec) throw new TsbpfError(`${this.#ctx()}: the map has no BTF value type; use lookup() for bytes`);
    return this.#valueCodec.decode(v, 0, o);
  }

  /**
   * Value of `key` as a JS value decoded by the map's BTF value type (one per CPU for per-CPU maps), or
   * undefined. The key may be a JS value (encoded by the BTF key type), a Buffer or a number.
   */
  get(key: unknown, o?: DecodeOptions): unknown {
    const k = this.#encodeKey(key);
    if (isPerCpu(this.type)) return this.lookupPerCpu(k)?.map((b) => this.#decodeValue(b, o));
    const v = this.lookup(k);
    return v === undefined ? undefined : this.#decodeValue(v, o);
  }

  /** Store a JS value (encoded by the BTF value type; refused when it does not fit) at `key`. */
  set(key: unknown, value: unknown, flags: number = UpdateFlags.ANY): void {
    const k = this.#encodeKey(key);
    if (!this.#valueCodec) throw new TypeError(`${this.#ctx()}: the map has no BTF value type; use update() with a Buffer`);
    const enc = (x: unknown) => (x instanceof Uint8Array ? x : this.#valueCodec!.encode(x));
    this.update(k, isPerCpu(this.type) && Array.isArray(value) ? value.map(enc) : enc(value), flags);
  }

  /** `[key, value]` pairs decoded through the BTF types (keys stay Buffers without a BTF key type). */
  *decodedEntries(o?: DecodeOptions): Generator<[unknown, unknown]> {
    for (const [k, v] of this.entries()) {
      const key = this.#keyCodec ? this.#keyCodec.decode(k, 0, o) : k;
      yield [key, Array.isArray(v) ? v.map((b) => this.#decodeValue(b, o)) : this.#decodeValue(v, o)];
    }
  }

  /** Create a map. Errors name the map and say what the kernel refused. */
  static create(o: MapCreateOptions): BpfMap {
    checkCreateOptions(o);
    const fd = mapCreate(
      {
        mapType: o.type,
        keySize: o.keySize,
        valueSize: o.valueSize,
        maxEntries: o.maxEntries,
        flags: o.flags,
        numaNode: o.numaNode,
        mapExtra: o.mapExtra,
        name: o.name,
        innerMapFd: o.innerMap?.fd,
        btfFd: o.btfFd,
        btfKeyTypeId: o.btfKeyTypeId,
        btfValueTypeId: o.btfValueTypeId,
        btfVmlinuxValueTypeId: o.btfVmlinuxValueTypeId,
      },
      `map "${o.name ?? ''}" (${mapTypeName(o.type)})`,
    );
    return new BpfMap(fd, {
      name: o.name ?? '',
      type: o.type,
      keySize: o.keySize,
      valueSize: o.valueSize,
      maxEntries: o.maxEntries,
      flags: o.flags ?? 0,
    });
  }

  static fromId(id: number): BpfMap {
    return new BpfMap(getFdById('MAP_GET_FD_BY_ID', id, `map id ${id}`));
  }

  static fromPin(path: string): BpfMap {
    checkBpffsPath(path);
    return new BpfMap(objGet(path, 0, `pinned map ${path}`));
  }

  /** The map's fd; throws ClosedError after close(). */
  get fd(): number {
    try {
      return this.#fd.value;
    } catch {
      throw new ClosedError(`${this.#ctx()} is closed: it can no longer be used (open it again with BpfMap.fromPin/fromId, or close it later)`);
    }
  }

  get closed(): boolean {
    return this.#fd.closed;
  }

  get perCpu(): boolean {
    return isPerCpu(this.type);
  }

  /** Bytes of one per-CPU slot (value size rounded up to 8). */
  get perCpuStride(): number {
    return (this.valueSize + 7) & ~7;
  }

  info(): MapInfo {
    return readMapInfo(this.fd);
  }

  #ctx(): string {
    return `map "${this.name}" (${mapTypeName(this.type)})`;
  }

  #flags(flags: unknown, op: string): number {
    return checkElementFlags(flags, `${this.#ctx()}: ${op}`);
  }

  #key(key: KeyLike): Uint8Array {
    if (key instanceof Uint8Array) {
      if (key.length !== this.keySize) {
        throw new TypeError(
          `${this.#ctx()}: key is ${key.length} bytes, the map's key size is ${this.keySize}: pass a Buffer of exactly ${this.keySize} bytes`,
        );
      }
      return key;
    }
    if (typeof key === 'number' || typeof key === 'bigint') {
      const k = this.#scratchKey;
      if (this.keySize === 4 || this.keySize === 8) {
        const bits = this.keySize * 8;
        const ok = typeof key === 'number'
          ? Number.isSafeInteger(key) && key >= 0 && key <= (bits === 32 ? 0xffffffff : Number.MAX_SAFE_INTEGER)
          : key >= 0n && key < 1n << BigInt(bits);
        if (!ok) {
          throw new TypeError(
            `${this.#ctx()}: key ${describeValue(key)} is not a u${bits}: numeric keys must be integers in [0, 2^${bits})` +
              (typeof key === 'number' && bits === 64 ? ' (pass a bigint above 2^53)' : ''),
          );
        }
        if (bits === 32) k.writeUInt32LE(Number(key), 0);
        else k.writeBigUInt64LE(BigInt(key), 0);
        return k.subarray(0, this.keySize);
      }
      throw new TypeError(`${this.#ctx()}: a numeric key needs a 4- or 8-byte key size (this map's is ${this.keySize}); pass a Buffer`);
    }
    throw new TypeError(`${this.#ctx()}: key must be a Buffer/Uint8Array${this.keySize === 4 || this.keySize === 8 ? ', number or bigint' : ''}, got ${describeArgument(key)}`);
  }

  /** Total bytes of one lookup/update value (all CPUs for per-CPU maps). */
  get #valueBytes(): number {
    return isPerCpu(this.type) ? this.perCpuStride * this.#possible : this.valueSize;
  }

  #value(value: Uint8Array | Uint8Array[]): Uint8Array {
    if (isPerCpu(this.type)) {
      const stride = this.perCpuStride;
      const out = Buffer.alloc(stride * this.#possible);
      if (Array.isArray(value)) {
        if (value.length !== this.#possible) {
          throw new TypeError(
            `${this.#ctx()}: per-CPU value needs ${this.#possible} entries (one per possible CPU), got ${value.length}: ` +
              `pass one ${this.valueSize}-byte Buffer per CPU, or a single Buffer for every CPU`,
          );
        }
        value.forEach((v, i) => {
          this.#checkValue(v);
          out.set(v, i * stride);
        });
      } else {
        this.#checkValue(value);
        for (let i = 0; i < this.#possible; i++) out.set(value, i * stride);
      }
      return out;
    }
    if (Array.isArray(value)) throw new TypeError(`${this.#ctx()}: only per-CPU maps take an array of values; pass one ${this.valueSize}-byte Buffer`);
    this.#checkValue(value);
    return value;
  }

  #checkValue(v: unknown): asserts v is Uint8Array {
    if (!(v instanceof Uint8Array)) throw new TypeError(`${this.#ctx()}: value must be a Buffer/Uint8Array, got ${describeArgument(v)}`);
    if (v.length !== this.valueSize) {
      throw new TypeError(
        `${this.#ctx()}: value is ${v.length} bytes, the map's value size is ${this.valueSize}: pass a Buffer of exactly ${this.valueSize} bytes`,
      );
    }
  }

  /** Value of `key`, or undefined when absent. Per-CPU maps: use lookupPerCpu(). */
  lookup(key: KeyLike, flags = 0): Buffer | undefined {
    const k = this.#key(key);
    this.#flags(flags, 'lookup');
    if (isPerCpu(this.type)) {
      throw new TsbpfError(`${this.#ctx()} is per-CPU: use lookupPerCpu() to get one value per CPU`);
    }
    const out = Buffer.alloc(this.valueSize);
    return mapLookup(this.fd, k, out, 0, this.valueSize, flags, this.#ctx()) ? out : undefined;
  }

  /** One value per possible CPU, or undefined when absent. */
  lookupPerCpu(key: KeyLike): Buffer[] | undefined {
    const k = this.#key(key);
    if (!isPerCpu(this.type)) {
      const v = this.lookup(k);
      return v ? [v] : undefined;
    }
    const total = this.#valueBytes;
    const out = Buffer.alloc(total);
    if (!mapLookup(this.fd, k, out, 0, total, 0, this.#ctx())) return undefined;
    const stride = this.perCpuStride;
    const res: Buffer[] = [];
    for (let i = 0; i < this.#possible; i++) res.push(out.subarray(i * stride, i * stride + this.valueSize));
    return res;
  }

  /** Look up and remove (hash maps, queues and stacks: pass `null` as key for queue/stack). */
  lookupAndDelete(key: KeyLike | null): Buffer | undefined {
    if (key === null && this.keySize !== 0) {
      this.fd; // closed: ClosedError first
      throw new TypeError(`${this.#ctx()}: lookupAndDelete(null) is for queues and stacks; this map's keys are ${this.keySize} bytes: pass a key`);
    }
    const k = key === null ? new Uint8Array(0) : this.#key(key);
    const total = this.#valueBytes;
    const out = Buffer.alloc(total);
    return mapLookup(this.fd, k, out, 0, total, 0, this.#ctx(), true) ? out : undefined;
  }

  /** Insert or replace. `flags`: UpdateFlags.ANY (default), NOEXIST, EXIST, LOCK. */
  update(key: KeyLike, value: Uint8Array | Uint8Array[], flags: number = UpdateFlags.ANY): void {
    const k = this.#key(key);
    const v = this.#value(value);
    this.#flags(flags, 'update');
    mapUpdate(this.fd, k, v, flags, this.#ctx());
  }

  /** Queue/stack: add `value` (flags: UpdateFlags.EXIST overwrites the oldest when full). Bloom filter: add. */
  push(value: Uint8Array, flags = 0): void {
    this.#checkValue(value);
    this.#flags(flags, 'push');
    mapUpdate(this.fd, new Uint8Array(0), value, flags, this.#ctx());
  }

  /** Queue/stack: remove and return the next value, or undefined when empty. */
  pop(): Buffer | undefined {
    return this.lookupAndDelete(null);
  }

  /**
   * Queue/stack: the next value without removing it (no argument). Bloom filter: whether `value` may be
   * in the set (false means certainly not).
   */
  peek(): Buffer | undefined;
  peek(value: Uint8Array): boolean;
  peek(value?: Uint8Array): Buffer | boolean | undefined {
    if (value === undefined) {
      const out = Buffer.alloc(this.valueSize);
      return mapLookup(this.fd, new Uint8Array(0), out, 0, this.valueSize, 0, this.#ctx()) ? out : undefined;
    }
    this.#checkValue(value);
    return mapPeekValue(this.fd, value, this.#ctx());
  }

  /** Remove `key`; returns false when it was absent. */
  delete(key: KeyLike): boolean {
    return mapDelete(this.fd, this.#key(key), this.#ctx());
  }

  /** The key after `key` (first key when `key` is undefined), or undefined at the end. */
  nextKey(key?: KeyLike): Buffer | undefined {
    const out = Buffer.alloc(this.keySize);
    const k = key === undefined ? null : this.#key(key);
    return mapNextKey(this.fd, k, out, this.keySize, this.#ctx()) ? out : undefined;
  }

  /** Iterate keys. Entries added or removed while iterating may be missed or seen twice (kernel semantics). */
  *keys(): Generator<Buffer> {
    let k = this.nextKey();
    let n = 0;
    const limit = Math.max(this.maxEntries, 1) * 2 + 16;
    while (k) {
      yield k;
      const next = this.nextKey(k);
      // A hash bucket whose current key was deleted restarts from the first key:
      // bound the walk so concurrent deletions can't make it endless.
      if (++n > limit) return;
      k = next;
    }
  }

  /**
   * Iterate `[key, value]` pairs (values are one Buffer per CPU for per-CPU maps). Uses batch lookups
   * (one syscall per chunk) where the kernel offers them for this map type, per-key calls otherwise.
   * The Buffers stay valid after the iteration moves on.
   */
  *entries(): Generator<[Buffer, Buffer | Buffer[]]> {
    yield* lookupBatch(this, { batchSize: Math.min(Math.max(this.maxEntries, 1), 4096) });
  }

  [Symbol.iterator](): Generator<[Buffer, Buffer | Buffer[]]> {
    return this.entries();
  }

  /** Make the map read-only for user space (BPF_MAP_FREEZE). */
  freeze(): void {
    mapFreeze(this.fd, this.#ctx());
  }

  /** Pin in a BPF filesystem (refused elsewhere). */
  pin(path: string): void {
    this.fd; // closed: ClosedError before the path is looked at
    checkBpffsPath(path, { pin: true });
    objPin(this.fd, path, `${this.#ctx()}: pin to ${path}`);
  }

  /** Remove the pin at `path`; returns false when there was none. The map lives on while fds remain. */
  unpin(path: string): boolean {
    // Works after close() too: the pin is the kernel's, not this handle's.
    return unpin(path);
  }

  /** A second handle on the same kernel map. */
  clone(): BpfMap {
    this.fd; // ClosedError naming the map, not the fd
    return new BpfMap(this.#fd.dup(), this);
  }

  close(): void {
    this.#fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export { BpfMap as Map };

/** The map pinned at `path` (libbpf's bpf_obj_get / cilium's LoadPinnedMap). */
export function loadPinnedMap(path: string): BpfMap {
  return BpfMap.fromPin(path);
}

/** A value for an error message: numbers and bigints as themselves, anything else by its type. */
function describeValue(v: unknown): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 20 ? v.slice(0, 20) + '…' : v)}`;
  return describeArgument(v);
}

/** Element flags (BPF_ANY, BPF_F_LOCK...) of `where`: a non-negative integer, refused otherwise before any syscall. */
export function checkElementFlags(flags: unknown, where: string): number {
  if (typeof flags !== 'number' || !Number.isSafeInteger(flags) || flags < 0) {
    throw new TypeError(`${where}: flags must be a non-negative integer (UpdateFlags.*), got ${describeValue(flags)}`);
  }
  return flags;
}

const U32_MAX = 0xffffffff;

/** Sizes, counts and flags of MapCreateOptions: u32 integers, refused before any syscall. */
function checkCreateOptions(o: MapCreateOptions): void {
  if (o === null || typeof o !== 'object') throw new TypeError(`BpfMap.create: pass an options object, got ${describeArgument(o)}`);
  const what = `map "${o.name ?? ''}"`;
  if (o.name !== undefined && typeof o.name !== 'string') throw new TypeError(`${what}: name must be a string, got ${describeArgument(o.name)}`);
  const fields = ['type', 'keySize', 'valueSize', 'maxEntries', 'flags', 'numaNode', 'btfFd', 'btfKeyTypeId', 'btfValueTypeId',
    'btfVmlinuxValueTypeId'] as const;
  for (const f of fields) {
    const v = o[f];
    if (v === undefined && f !== 'type' && f !== 'keySize' && f !== 'valueSize' && f !== 'maxEntries') continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > U32_MAX) {
      throw new TypeError(`${what}: ${f} must be an integer in [0, 2^32), got ${describeValue(v)}`);
    }
  }
  if (o.mapExtra !== undefined && (typeof o.mapExtra !== 'bigint' || o.mapExtra < 0n || o.mapExtra >= 1n << 64n)) {
    throw new TypeError(`${what}: mapExtra must be a bigint in [0, 2^64), got ${describeValue(o.mapExtra)}`);
  }
  if (o.innerMap !== undefined && !(o.innerMap instanceof BpfMap)) throw new TypeError(`${what}: innerMap must be a BpfMap, got ${describeArgument(o.innerMap)}`);
}

/** True for errors meaning "the kernel does not support this map type". */
export function isUnsupportedMapError(e: unknown): boolean {
  return e instanceof BpfError && e.cmd === 'MAP_CREATE' && (e.errnoCode === E.EINVAL || e.errnoCode === E.EOPNOTSUPP);
}
