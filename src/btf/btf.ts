// Raw BTF: parse, look up, edit and marshal.
//
// Layout of raw BTF (all little-endian):
//   header   magic u16 (0xeb9f), version u8 (1), flags u8, hdr_len u32,
//            type_off u32, type_len u32, str_off u32, str_len u32
//   types    type_len bytes at hdr_len + type_off: a sequence of records, each a
//            12-byte common part (name_off, info, size-or-type) followed by a
//            kind-specific tail (see scanTypes)
//   strings  str_len bytes at hdr_len + str_off: NUL-terminated strings
//
// Parsing is one validating pass over the type section that only records where
// each record starts (a Uint32Array of word indexes). A type becomes an object
// the first time someone asks for it, and is cached from then on. That keeps
// parsing the ~130k types of vmlinux cheap when a caller needs only a handful.
//
// Split BTF (kernel modules) continues a base BTF: its first type id is the
// base's length and its string offsets start where the base's string section
// ends; smaller ids and offsets refer into the base.

import { endianness } from 'node:os';
import { BtfError, BtfNotFoundError } from '../errors.js';
import { StringTableBuilder } from './strings.js';
import {
  BTF_KIND,
  type BtfEnum64Value,
  type BtfEnumValue,
  type BtfKind,
  type BtfLinkage,
  type BtfMember,
  type BtfParam,
  type BtfType,
  type BtfTypeInit,
  type BtfVarSecinfo,
  type BtfVoid,
} from './types.js';

const MAGIC = 0xeb9f;
const HEADER_LEN = 24;
/** Bits of btf_type.info that carry meaning: vlen (0-15), kind (24-28), kind_flag (31). */
const INFO_MASK = 0x9f00ffff;
/** Bits of an INT's encoding word that carry meaning: bits (0-7), offset (16-23), encoding (24-26). */
const INT_MASK = 0x07ff00ff;
const INT_SIGNED = 1;
const INT_CHAR = 2;
const INT_BOOL = 4;
/** Size of a pointer. BPF is a 64-bit target, and so is every kernel we read BTF from. */
const POINTER_SIZE = 8;
/** Largest alignment a scalar needs (a 16-byte __int128 is still 8-byte aligned here). */
const MAX_SCALAR_ALIGN = 8;
const HOST_LE = endianness() === 'LE';
/** Deepest struct-in-struct nesting alignof() follows (C code never comes close; bad data might). */
const MAX_NESTING = 1000;

/** State of one alignof() walk: structs being computed (to catch cycles) and results so far. */
interface AlignWalk {
  visiting: Set<number>;
  known: Map<number, number>;
}

const KIND_BY_NUMBER: (BtfKind | undefined)[] = [];
for (const [name, num] of Object.entries(BTF_KIND)) {
  if (name !== 'unknown') KIND_BY_NUMBER[num] = name as BtfKind;
}
const LINKAGES: readonly BtfLinkage[] = ['static', 'global', 'extern'];

const VOID: BtfVoid = Object.freeze({ kind: 'void', id: 0, name: '' }) as BtfVoid;

/** Kinds that are only an alias or qualifier of the type they reference. */
const SKIPPED_BY_RESOLVE: ReadonlySet<BtfKind> = new Set(['typedef', 'const', 'volatile', 'restrict', 'type_tag']);

export interface BtfParseOptions {
  /** The base BTF, when `data` is split BTF (e.g. a kernel module's, on top of vmlinux). */
  base?: Btf;
}

export class Btf {
  /** The base this split BTF continues, if any. */
  readonly base?: Btf;

  /** Id of the first type this spec owns (1, or the base's length for split BTF). */
  readonly #firstId: number;
  /** The parsed type section, as little-endian words decoded to host order. */
  readonly #words: Uint32Array;
  /** Word index into #words of every parsed type record, by id - #firstId (parsedCount entries used). */
  readonly #offsets: Uint32Array;
  /** The parsed string section. */
  readonly #strings: Buffer;
  /**
   * #strings as one JS string when it is pure ASCII (as kernel and clang BTF are), so that byte
   * offsets are character offsets and a name is a cheap slice; otherwise undefined.
   */
  readonly #asciiStrings?: string;
  /** Offset that the first byte of #strings has (the base's string section end, or 0). */
  readonly #strStart: number;
  /** Decoded, replaced and added types, by id - #firstId. */
  readonly #cache: (BtfType | undefined)[];
  /** How many types came from the parsed data (the rest were added). */
  readonly #parsedCount: number;
  /**
   * Name lookup over the parsed types: an open-addressing hash table of (index + 1), keyed by a hash
   * of the name's bytes in the string section, built on the first lookup without creating a JS
   * string per type (vmlinux has ~127k named types). Candidates are verified against the bytes.
   */
  #nameHash?: Int32Array;
  /** Ids of added types and of replaced parsed types, by their current name. */
  readonly #overlay = new Map<string, number[]>();
  /** Indices of parsed types replaced by setType (their raw name may no longer apply). */
  readonly #replaced = new Set<number>();
  /** The marshal string table, created on first marshal() or stringOffset(). */
  #table?: StringTableBuilder;
  /** Offsets of the strings of #strings (and the base's), built when split BTF on top is marshalled. */
  #rawStringIndex?: Map<string, number>;

  private constructor(
    base: Btf | undefined,
    words: Uint32Array,
    offsets: Uint32Array,
    parsedCount: number,
    strings: Buffer,
  ) {
    this.base = base;
    this.#firstId = base ? base.length : 1;
    this.#strStart = base ? base.#rawStringsEnd : 0;
    this.#words = words;
    this.#offsets = offsets;
    this.#strings = strings;
    if (isAscii(strings)) this.#asciiStrings = strings.toString('latin1');
    this.#cache = new Array<BtfType | undefined>(parsedCount);
    this.#parsedCount = parsedCount;
  }

  /** A spec with no types of its own (only void, or only the base's types), to build BTF with addType(). */
  static empty(options: BtfParseOptions = {}): Btf {
    return new Btf(options.base, new Uint32Array(0), new Uint32Array(0), 0, Buffer.alloc(0));
  }

  /**
   * Parses raw BTF. Everything structural is checked here (header, section bounds, every record's
   * kind, length and string and type references), so that later lookups cannot fail on bad data.
   * Throws BtfError for any malformed input.
   *
   * The base, if given, must not gain or lose types afterwards: this spec's ids start after it.
   */
  static parse(data: Buffer | Uint8Array, options: BtfParseOptions = {}): Btf {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const base = options.base;
    if (buf.length < HEADER_LEN) {
      throw new BtfError(`BTF is ${buf.length} bytes, too short for the ${HEADER_LEN}-byte header`);
    }
    const magic = buf.readUInt16LE(0);
    if (magic === 0x9feb) throw new BtfError('BTF is big-endian; only little-endian BTF is supported');
    if (magic !== MAGIC) throw new BtfError(`not BTF: magic is 0x${magic.toString(16)}, want 0xeb9f`);
    const version = buf[2]!;
    if (version !== 1) throw new BtfError(`unsupported BTF version ${version}`);
    const hdrLen = buf.readUInt32LE(4);
    if (hdrLen < HEADER_LEN || hdrLen > buf.length) {
      throw new BtfError(`BTF header length ${hdrLen} is invalid for ${buf.length} bytes of data`);
    }
    const typeOff = buf.readUInt32LE(8);
    const typeLen = buf.readUInt32LE(12);
    const strOff = buf.readUInt32LE(16);
    const strLen = buf.readUInt32LE(20);
    const bodyLen = buf.length - hdrLen;
    if (typeOff + typeLen > bodyLen) {
      throw new BtfError(`BTF type section (offset ${typeOff}, ${typeLen} bytes) is past the end of the data`);
    }
    if (strOff + strLen > bodyLen) {
      throw new BtfError(`BTF string section (offset ${strOff}, ${strLen} bytes) is past the end of the data`);
    }
    if (typeLen > 0 && strLen > 0 && typeOff < strOff + strLen && strOff < typeOff + typeLen) {
      throw new BtfError('BTF type and string sections overlap');
    }
    if (typeLen % 4 !== 0) throw new BtfError(`BTF type section length ${typeLen} is not a multiple of 4`);

    const strings = Buffer.from(buf.subarray(hdrLen + strOff, hdrLen + strOff + strLen));
    if (strLen > 0 && strings[strLen - 1] !== 0) throw new BtfError('BTF string section is not NUL-terminated');
    if (!base && strLen > 0 && strings[0] !== 0) {
      throw new BtfError('BTF string section does not start with the empty string');
    }

    // Copy the type section into its own (aligned) memory, in host byte order.
    const words = new Uint32Array(typeLen / 4);
    const wordBytes = Buffer.from(words.buffer, words.byteOffset, typeLen);
    buf.copy(wordBytes, 0, hdrLen + typeOff, hdrLen + typeOff + typeLen);
    if (!HOST_LE) wordBytes.swap32();

    const firstId = base ? base.length : 1;
    const strStart = base ? base.#rawStringsEnd : 0;
    const { offsets, count } = scanTypes(words, firstId, strStart, strStart + strLen);
    return new Btf(base, words, offsets, count, strings);
  }

  /** Number of type ids: valid ids are 0 .. length-1 (base ids included for split BTF). */
  get length(): number {
    return this.#firstId + this.#cache.length;
  }

  /** Where the parsed string section ends, in string offsets (what split BTF on top starts from). */
  get #rawStringsEnd(): number {
    return this.#strStart + this.#strings.length;
  }

  /** The type with `id` (decoded on first use, then cached). */
  type(id: number): BtfType {
    if (id === 0) return VOID;
    if (!Number.isInteger(id) || id < 0 || id >= this.length) {
      throw new BtfError(`BTF type id ${id} is out of range (0..${this.length - 1})`);
    }
    if (id < this.#firstId) return this.base!.type(id);
    const i = id - this.#firstId;
    let t = this.#cache[i];
    if (t === undefined) {
      t = this.#decode(i);
      this.#cache[i] = t;
    }
    return t;
  }

  /** Own types in id order (not void, not the base's). */
  *types(): Iterable<BtfType> {
    for (let id = this.#firstId; id < this.length; id++) yield this.type(id);
  }

  /**
   * The string at `offset` in the *parsed* string sections (this spec's and its base's): the offsets
   * found in the original data, e.g. those of .BTF.ext records. Unrelated to marshal() offsets.
   */
  stringAt(offset: number): string {
    if (!Number.isInteger(offset) || offset < 0) throw new BtfError(`invalid BTF string offset ${offset}`);
    if (offset < this.#strStart) return this.base!.stringAt(offset);
    const rel = offset - this.#strStart;
    if (rel === 0 && this.#strings.length === 0) return '';
    if (rel >= this.#strings.length) {
      throw new BtfError(`BTF string offset ${offset} is past the end of the string section`);
    }
    // The section ends with a NUL (checked by parse), so indexOf always finds one.
    const ascii = this.#asciiStrings;
    if (ascii !== undefined) return ascii.slice(rel, ascii.indexOf('\0', rel));
    return this.#strings.toString('utf8', rel, this.#strings.indexOf(0, rel));
  }

  /** All types named `name`, base first, in id order. */
  typesByName(name: string): BtfType[] {
    const found = this.base ? this.base.typesByName(name) : [];
    if (name === '') return found;
    const ids: number[] = [];
    if (this.#parsedCount > 0) {
      const table = (this.#nameHash ??= this.#buildNameHash());
      const mask = table.length - 1;
      for (let slot = hashString(name) & mask; table[slot] !== 0; slot = (slot + 1) & mask) {
        const i = table[slot]! - 1;
        if (!this.#replaced.has(i) && this.#rawNameIs(i, name)) ids.push(this.#firstId + i);
      }
    }
    const extra = this.#overlay.get(name);
    if (extra) ids.push(...extra);
    if (ids.length > 1) ids.sort((a, b) => a - b);
    for (const id of ids) found.push(this.type(id));
    return found;
  }

  /** The first type (lowest id) of `kind` named `name`; throws BtfNotFoundError when there is none. */
  findType(name: string, kind: BtfKind): BtfType {
    const t = this.tryFindType(name, kind);
    if (!t) throw new BtfNotFoundError(`no BTF type ${kind} ${JSON.stringify(name)}`);
    return t;
  }

  /** The first type (lowest id) of `kind` named `name`, or undefined. */
  tryFindType(name: string, kind: BtfKind): BtfType | undefined {
    if (kind === 'void') return name === '' ? VOID : undefined;
    return this.typesByName(name).find((t) => t.kind === kind);
  }

  /** Follows typedef, const, volatile, restrict and type_tag to the underlying type. */
  resolve(id: number): BtfType {
    let t = this.type(id);
    for (let hops = 0; SKIPPED_BY_RESOLVE.has(t.kind); hops++) {
      if (hops > this.length) throw new BtfError(`BTF type ${id} is part of a reference cycle`);
      t = this.type((t as { type: number }).type);
    }
    return t;
  }

  /** Size in bytes of a value of type `id`. Throws BtfError for types without a size (void, func, fwd, ...). */
  sizeof(id: number): number {
    let t = this.type(id);
    let multiplier = 1;
    for (let hops = 0; ; hops++) {
      if (hops > this.length) throw new BtfError(`BTF type ${id} is part of a reference cycle`);
      switch (t.kind) {
        case 'int':
        case 'struct':
        case 'union':
        case 'enum':
        case 'enum64':
        case 'float':
        case 'datasec': {
          const size = multiplier * t.size;
          if (!Number.isSafeInteger(size)) throw new BtfError(`size of BTF type ${id} overflows`);
          return size;
        }
        case 'ptr':
          return multiplier * POINTER_SIZE;
        case 'array':
          multiplier *= t.nelems;
          t = this.type(t.type);
          break;
        case 'typedef':
        case 'const':
        case 'volatile':
        case 'restrict':
        case 'type_tag':
        case 'var':
          t = this.type(t.type);
          break;
        default:
          throw new BtfError(`BTF type ${t.id} (${t.kind}${t.name ? ' ' + t.name : ''}) has no size`);
      }
    }
  }

  /** Alignment in bytes of type `id`, as a C compiler for a 64-bit target lays it out. */
  alignof(id: number): number {
    return this.#alignof(id, { visiting: new Set(), known: new Map() });
  }

  #alignof(id: number, walk: AlignWalk): number {
    let t = this.type(id);
    for (let hops = 0; ; hops++) {
      if (hops > this.length) throw new BtfError(`BTF type ${id} is part of a reference cycle`);
      switch (t.kind) {
        case 'int':
        case 'enum':
        case 'enum64':
        case 'float':
          return Math.max(1, Math.min(t.size, MAX_SCALAR_ALIGN));
        case 'ptr':
          return POINTER_SIZE;
        case 'array':
        case 'typedef':
        case 'const':
        case 'volatile':
        case 'restrict':
        case 'type_tag':
        case 'var':
          t = this.type(t.type);
          break;
        case 'struct':
        case 'union':
          return this.#compositeAlign(t.id, t.size, t.members, walk);
        default:
          throw new BtfError(`BTF type ${t.id} (${t.kind}${t.name ? ' ' + t.name : ''}) has no alignment`);
      }
    }
  }

  #compositeAlign(id: number, size: number, members: BtfMember[], walk: AlignWalk): number {
    const known = walk.known.get(id);
    if (known !== undefined) return known;
    if (walk.visiting.has(id)) throw new BtfError(`BTF type ${id} contains itself`);
    if (walk.visiting.size >= MAX_NESTING) throw new BtfError(`BTF type ${id} is nested too deeply`);
    walk.visiting.add(id);
    let align = 1;
    let packed = false;
    for (const m of members) {
      const a = this.#alignof(m.type, walk);
      align = Math.max(align, a);
      // A member that is not at a multiple of its alignment means the struct is packed.
      if (!this.#isBitfield(m) && m.bitOffset % (a * 8) !== 0) packed = true;
    }
    walk.visiting.delete(id);
    const result = packed || size % align !== 0 ? 1 : align;
    walk.known.set(id, result);
    return result;
  }

  #isBitfield(m: BtfMember): boolean {
    if (m.bitfieldSize !== 0) return true;
    // kind_flag 0 encodes a bitfield as an int type of fewer bits than its storage.
    const t = this.resolve(m.type);
    return t.kind === 'int' && (t.bitsOffset !== 0 || t.bits !== t.size * 8);
  }

  /** Replaces the type at `t.id`, which must be one this spec owns (not the base's, not void). */
  setType(t: BtfType): void {
    const id = t.id;
    if (!Number.isInteger(id) || id < this.#firstId || id >= this.length) {
      throw new BtfError(`cannot set BTF type ${id}: this spec owns ids ${this.#firstId}..${this.length - 1}`);
    }
    const i = id - this.#firstId;
    const oldName = this.#peek(i).name;
    const old = this.#overlay.get(oldName);
    if (old) {
      const at = old.indexOf(id);
      if (at >= 0) old.splice(at, 1);
      if (old.length === 0) this.#overlay.delete(oldName);
    }
    if (i < this.#parsedCount) this.#replaced.add(i);
    this.#addToOverlay(t.name, id);
    this.#cache[i] = t;
  }

  /** Appends a type and returns its new id. */
  addType(t: BtfTypeInit): number {
    if ((t as BtfType).kind === 'void') throw new BtfError('cannot add a void type');
    const id = this.length;
    const full = { ...t, id } as BtfType;
    this.#cache.push(full);
    this.#addToOverlay(full.name, id);
    return id;
  }

  /**
   * Offset that string `s` has in the string table marshal() writes, adding it to that table if it is
   * not there yet. The table only grows, so an offset stays valid for every later marshal() of this
   * spec. Use it for strings that other kernel inputs point into BTF with, e.g. bpf_line_info file
   * names and source lines. For split BTF, strings the base already has get the base's offset.
   */
  stringOffset(s: string): number {
    return this.#stringTable(true).add(s);
  }

  /**
   * Raw BTF of this spec's own types: header, types, strings. For split BTF the type ids continue
   * after the base and string offsets below the base's string section length refer to the base's
   * (parsed) strings, which is how the kernel reads module BTF. Strings are deduplicated.
   */
  marshal(): Buffer {
    const table = this.#stringTable(false);
    const w = new WordWriter(Math.max(64, this.#words.length + 16));
    const count = this.#cache.length;
    for (let i = 0; i < count; i++) this.#encode(this.#peek(i), w, table);
    const typeBytes = w.toBuffer();
    const strBytes = table.toBuffer();
    const out = Buffer.alloc(HEADER_LEN + typeBytes.length + strBytes.length);
    out.writeUInt16LE(MAGIC, 0);
    out[2] = 1; // version
    out[3] = 0; // flags
    out.writeUInt32LE(HEADER_LEN, 4);
    out.writeUInt32LE(0, 8); // type_off
    out.writeUInt32LE(typeBytes.length, 12);
    out.writeUInt32LE(typeBytes.length, 16); // str_off
    out.writeUInt32LE(strBytes.length, 20);
    typeBytes.copy(out, HEADER_LEN);
    strBytes.copy(out, HEADER_LEN + typeBytes.length);
    return out;
  }

  // ---- internals ----

  /** The type at own index i, decoded without caching it when it is not cached yet. */
  #peek(i: number): BtfType {
    return this.#cache[i] ?? this.#decode(i);
  }

  #stringTable(fillFromTypes: boolean): StringTableBuilder {
    if (this.#table) return this.#table;
    const table = this.base
      ? new StringTableBuilder(this.#strStart, (s) => this.base!.#rawStringOffset(s))
      : new StringTableBuilder(0);
    if (fillFromTypes) {
      // Add the types' strings in the order marshal() would, so the layout is the same either way.
      const sink = new WordWriter(16);
      for (let i = 0; i < this.#cache.length; i++) {
        sink.reset();
        this.#encode(this.#peek(i), sink, table);
      }
    }
    this.#table = table;
    return table;
  }

  /** Offset of `s` in the parsed string sections of this spec or its base. */
  #rawStringOffset(s: string): number | undefined {
    if (!this.#rawStringIndex) {
      const index = new Map<string, number>();
      const strs = this.#strings;
      for (let start = 0; start < strs.length; ) {
        const end = strs.indexOf(0, start);
        const str = strs.toString('utf8', start, end);
        if (!index.has(str)) index.set(str, this.#strStart + start);
        start = end + 1;
      }
      this.#rawStringIndex = index;
    }
    const own = this.#rawStringIndex.get(s);
    if (own !== undefined) return own;
    return this.base ? this.base.#rawStringOffset(s) : undefined;
  }

  #buildNameHash(): Int32Array {
    const n = this.#parsedCount;
    let size = 16;
    while (size < n * 2) size *= 2;
    const table = new Int32Array(size);
    const mask = size - 1;
    const words = this.#words;
    const offsets = this.#offsets;
    for (let i = 0; i < n; i++) {
      const off = words[offsets[i]!]!;
      if (off === 0) continue;
      let slot = this.#hashAt(off) & mask;
      while (table[slot] !== 0) slot = (slot + 1) & mask;
      table[slot] = i + 1;
    }
    return table;
  }

  /** hashString() of the string at a parsed string offset, read from the bytes in place. */
  #hashAt(offset: number): number {
    if (offset < this.#strStart) return hashString(this.base!.stringAt(offset));
    const strs = this.#strings;
    let h = FNV_OFFSET;
    for (let p = offset - this.#strStart; strs[p] !== 0; p++) h = Math.imul(h ^ strs[p]!, FNV_PRIME);
    return h >>> 0;
  }

  /** Whether parsed type `i`'s name (as in the data) is `name`. */
  #rawNameIs(i: number, name: string): boolean {
    const off = this.#words[this.#offsets[i]!]!;
    const ascii = this.#asciiStrings;
    if (ascii !== undefined && off >= this.#strStart) {
      const rel = off - this.#strStart;
      return ascii.startsWith(name, rel) && ascii.charCodeAt(rel + name.length) === 0;
    }
    return this.stringAt(off) === name;
  }

  #addToOverlay(name: string, id: number): void {
    if (name === '') return;
    const ids = this.#overlay.get(name);
    if (ids) ids.push(id);
    else this.#overlay.set(name, [id]);
  }


  #decode(i: number): BtfType {
    const w = this.#words;
    let p = this.#offsets[i]!;
    const id = this.#firstId + i;
    const name = this.stringAt(w[p]!);
    const info = w[p + 1]!;
    const sizeOrType = w[p + 2]!;
    const kindNum = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kflag = info >>> 31 === 1;
    p += 3;
    switch (kindNum) {
      case BTF_KIND.int: {
        const enc = w[p]!;
        const flags = enc >>> 24;
        return {
          kind: 'int',
          id,
          name,
          size: sizeOrType,
          signed: (flags & INT_SIGNED) !== 0,
          char: (flags & INT_CHAR) !== 0,
          bool: (flags & INT_BOOL) !== 0,
          bitsOffset: (enc >>> 16) & 0xff,
          bits: enc & 0xff,
        };
      }
      case BTF_KIND.ptr:
        return { kind: 'ptr', id, name, type: sizeOrType };
      case BTF_KIND.typedef:
        return { kind: 'typedef', id, name, type: sizeOrType };
      case BTF_KIND.volatile:
        return { kind: 'volatile', id, name, type: sizeOrType };
      case BTF_KIND.const:
        return { kind: 'const', id, name, type: sizeOrType };
      case BTF_KIND.restrict:
        return { kind: 'restrict', id, name, type: sizeOrType };
      case BTF_KIND.type_tag:
        return kflag
          ? { kind: 'type_tag', id, name, type: sizeOrType, attribute: true }
          : { kind: 'type_tag', id, name, type: sizeOrType };
      case BTF_KIND.array:
        return { kind: 'array', id, name, type: w[p]!, indexType: w[p + 1]!, nelems: w[p + 2]! };
      case BTF_KIND.struct:
      case BTF_KIND.union: {
        const members: BtfMember[] = new Array(vlen);
        for (let k = 0; k < vlen; k++, p += 3) {
          const off = w[p + 2]!;
          members[k] = {
            name: this.stringAt(w[p]!),
            type: w[p + 1]!,
            bitOffset: kflag ? off & 0xffffff : off,
            bitfieldSize: kflag ? off >>> 24 : 0,
          };
        }
        return { kind: kindNum === BTF_KIND.struct ? 'struct' : 'union', id, name, size: sizeOrType, members };
      }
      case BTF_KIND.enum: {
        const values: BtfEnumValue[] = new Array(vlen);
        for (let k = 0; k < vlen; k++, p += 2) {
          const v = w[p + 1]!;
          values[k] = { name: this.stringAt(w[p]!), value: kflag ? v | 0 : v };
        }
        return { kind: 'enum', id, name, size: sizeOrType, signed: kflag, values };
      }
      case BTF_KIND.enum64: {
        const values: BtfEnum64Value[] = new Array(vlen);
        for (let k = 0; k < vlen; k++, p += 3) {
          const raw = (BigInt(w[p + 2]!) << 32n) | BigInt(w[p + 1]!);
          values[k] = { name: this.stringAt(w[p]!), value: kflag ? BigInt.asIntN(64, raw) : raw };
        }
        return { kind: 'enum64', id, name, size: sizeOrType, signed: kflag, values };
      }
      case BTF_KIND.fwd:
        return { kind: 'fwd', id, name, fwdKind: kflag ? 'union' : 'struct' };
      case BTF_KIND.func:
        return { kind: 'func', id, name, type: sizeOrType, linkage: LINKAGES[vlen]! };
      case BTF_KIND.func_proto: {
        const params: BtfParam[] = new Array(vlen);
        for (let k = 0; k < vlen; k++, p += 2) params[k] = { name: this.stringAt(w[p]!), type: w[p + 1]! };
        return { kind: 'func_proto', id, name, returnType: sizeOrType, params };
      }
      case BTF_KIND.var:
        return { kind: 'var', id, name, type: sizeOrType, linkage: LINKAGES[w[p]!]! };
      case BTF_KIND.datasec: {
        const vars: BtfVarSecinfo[] = new Array(vlen);
        for (let k = 0; k < vlen; k++, p += 3) vars[k] = { type: w[p]!, offset: w[p + 1]!, size: w[p + 2]! };
        return { kind: 'datasec', id, name, size: sizeOrType, vars };
      }
      case BTF_KIND.float:
        return { kind: 'float', id, name, size: sizeOrType };
      case BTF_KIND.decl_tag:
        return kflag
          ? { kind: 'decl_tag', id, name, type: sizeOrType, componentIdx: w[p]! | 0, attribute: true }
          : { kind: 'decl_tag', id, name, type: sizeOrType, componentIdx: w[p]! | 0 };
      default:
        // scanTypes() rejected every other kind.
        throw new BtfError(`BTF type ${id} has unknown kind ${kindNum}`);
    }
  }

  /** Appends the raw record of `t` to `w`, adding its strings to `table` (type name first, then members'). */
  #encode(t: BtfType, w: WordWriter, table: StringTableBuilder): void {
    const where = `BTF type ${t.id} (${t.kind})`;
    const u32 = (v: number, what: string): number => {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new BtfError(`${where}: ${what} ${v} is not a u32`);
      return v;
    };
    const ref = (v: number, what: string): number => {
      if (!Number.isInteger(v) || v < 0 || v >= this.length) {
        throw new BtfError(`${where}: ${what} ${v} is not a type id of this spec (0..${this.length - 1})`);
      }
      return v;
    };
    const str = (s: string): number => {
      if (typeof s !== 'string') throw new BtfError(`${where}: name is not a string`);
      return table.add(s);
    };
    const vlenOf = (n: number): number => {
      if (n > 0xffff) throw new BtfError(`${where}: ${n} members, more than BTF's limit of 65535`);
      return n;
    };
    const linkage = (l: BtfLinkage): number => {
      const n = LINKAGES.indexOf(l);
      if (n < 0) throw new BtfError(`${where}: unknown linkage ${String(l)}`);
      return n;
    };
    const head = (kind: number, vlen: number, kflag: boolean, sizeOrType: number): void => {
      w.push(str(t.name));
      w.push(((kflag ? 0x80000000 : 0) | (kind << 24) | vlen) >>> 0);
      w.push(sizeOrType);
    };

    switch (t.kind) {
      case 'void':
        throw new BtfError('void (type 0) cannot be marshalled');
      case 'int': {
        const bits = u32(t.bits, 'bit count');
        const off = u32(t.bitsOffset, 'bit offset');
        if (bits > 128 || off > 255) throw new BtfError(`${where}: bits ${bits} / offset ${off} out of range`);
        head(BTF_KIND.int, 0, false, u32(t.size, 'size'));
        const enc = (t.signed ? INT_SIGNED : 0) | (t.char ? INT_CHAR : 0) | (t.bool ? INT_BOOL : 0);
        w.push(((enc << 24) | (off << 16) | bits) >>> 0);
        return;
      }
      case 'ptr':
      case 'typedef':
      case 'volatile':
      case 'const':
      case 'restrict':
        head(BTF_KIND[t.kind], 0, false, ref(t.type, 'referenced type'));
        return;
      case 'type_tag':
        head(BTF_KIND.type_tag, 0, t.attribute === true, ref(t.type, 'referenced type'));
        return;
      case 'array':
        head(BTF_KIND.array, 0, false, 0);
        w.push(ref(t.type, 'element type'));
        w.push(ref(t.indexType, 'index type'));
        w.push(u32(t.nelems, 'element count'));
        return;
      case 'struct':
      case 'union': {
        const kflag = t.members.some((m) => m.bitfieldSize !== 0);
        head(BTF_KIND[t.kind], vlenOf(t.members.length), kflag, u32(t.size, 'size'));
        for (const m of t.members) {
          w.push(str(m.name));
          w.push(ref(m.type, `member ${m.name} type`));
          const bitOffset = u32(m.bitOffset, `member ${m.name} bit offset`);
          if (kflag) {
            const size = u32(m.bitfieldSize, `member ${m.name} bitfield size`);
            if (bitOffset > 0xffffff || size > 0xff) {
              throw new BtfError(`${where}: member ${m.name} bitfield offset/size ${bitOffset}/${size} do not fit`);
            }
            w.push(((size << 24) | bitOffset) >>> 0);
          } else {
            w.push(bitOffset);
          }
        }
        return;
      }
      case 'enum':
        head(BTF_KIND.enum, vlenOf(t.values.length), t.signed, u32(t.size, 'size'));
        for (const v of t.values) {
          w.push(str(v.name));
          if (!Number.isInteger(v.value) || v.value < -0x80000000 || v.value > 0xffffffff) {
            throw new BtfError(`${where}: value ${v.value} of ${v.name} does not fit 32 bits (use enum64)`);
          }
          w.push(v.value >>> 0);
        }
        return;
      case 'enum64':
        head(BTF_KIND.enum64, vlenOf(t.values.length), t.signed, u32(t.size, 'size'));
        for (const v of t.values) {
          w.push(str(v.name));
          if (typeof v.value !== 'bigint' || v.value < -(1n << 63n) || v.value >= 1n << 64n) {
            throw new BtfError(`${where}: value ${String(v.value)} of ${v.name} is not a 64-bit bigint`);
          }
          const raw = BigInt.asUintN(64, v.value);
          w.push(Number(raw & 0xffffffffn));
          w.push(Number(raw >> 32n));
        }
        return;
      case 'fwd':
        head(BTF_KIND.fwd, 0, t.fwdKind === 'union', 0);
        return;
      case 'func':
        head(BTF_KIND.func, linkage(t.linkage), false, ref(t.type, 'prototype'));
        return;
      case 'func_proto':
        head(BTF_KIND.func_proto, vlenOf(t.params.length), false, ref(t.returnType, 'return type'));
        for (const p of t.params) {
          w.push(str(p.name));
          w.push(ref(p.type, `parameter ${p.name} type`));
        }
        return;
      case 'var':
        head(BTF_KIND.var, 0, false, ref(t.type, 'type'));
        w.push(linkage(t.linkage));
        return;
      case 'datasec':
        head(BTF_KIND.datasec, vlenOf(t.vars.length), false, u32(t.size, 'size'));
        for (const v of t.vars) {
          w.push(ref(v.type, 'variable'));
          w.push(u32(v.offset, 'variable offset'));
          w.push(u32(v.size, 'variable size'));
        }
        return;
      case 'float':
        head(BTF_KIND.float, 0, false, u32(t.size, 'size'));
        return;
      case 'decl_tag': {
        const idx = t.componentIdx;
        if (!Number.isInteger(idx) || idx < -1 || idx > 0x7fffffff) {
          throw new BtfError(`${where}: component index ${idx} is invalid`);
        }
        head(BTF_KIND.decl_tag, 0, t.attribute === true, ref(t.type, 'tagged type'));
        w.push(idx >>> 0);
        return;
      }
      default:
        throw new BtfError(`${where}: unknown kind`);
    }
  }
}

function isAscii(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! > 0x7f) return false;
  return true;
}

/** A growable array of u32 words, turned into little-endian bytes at the end. */
class WordWriter {
  #words: Uint32Array;
  #n = 0;
  constructor(capacity: number) {
    this.#words = new Uint32Array(capacity);
  }
  push(v: number): void {
    if (this.#n === this.#words.length) {
      const bigger = new Uint32Array(this.#words.length * 2);
      bigger.set(this.#words);
      this.#words = bigger;
    }
    this.#words[this.#n++] = v;
  }
  reset(): void {
    this.#n = 0;
  }
  toBuffer(): Buffer {
    const b = Buffer.from(this.#words.buffer, 0, this.#n * 4);
    const copy = Buffer.from(b);
    if (!HOST_LE) copy.swap32();
    return copy;
  }
}

/**
 * The one pass over the type section: finds where each record starts and checks everything that
 * decoding relies on. `strStart`..`strEnd` is the range of valid own string offsets; offsets below
 * strStart belong to the base (split BTF).
 */
function scanTypes(
  w: Uint32Array,
  firstId: number,
  strStart: number,
  strEnd: number,
): { offsets: Uint32Array; count: number } {
  const nw = w.length;
  // Every record has at least 3 words, which bounds the count by the input size.
  const offsets = new Uint32Array(Math.floor(nw / 3));
  let count = 0;
  let maxRef = 0;
  let maxRefFrom = 0;
  const checkStr = (off: number, id: number, what: string): void => {
    // Offset 0 is always the empty string (of the base, for split BTF).
    if (off !== 0 && off >= strEnd) {
      throw new BtfError(`BTF type ${id}: ${what} offset ${off} is past the end of the string section`);
    }
  };
  const noteRef = (ref: number, id: number): void => {
    if (ref > maxRef) {
      maxRef = ref;
      maxRefFrom = id;
    }
  };
  let p = 0;
  while (p < nw) {
    const id = firstId + count;
    if (p + 3 > nw) throw new BtfError(`BTF type ${id} is truncated`);
    const nameOff = w[p]!;
    const info = w[p + 1]!;
    const sizeOrType = w[p + 2]!;
    if ((info & ~INFO_MASK) !== 0) throw new BtfError(`BTF type ${id} has invalid info 0x${info.toString(16)}`);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kflag = info >>> 31 === 1;
    checkStr(nameOff, id, 'name');
    let tail: number;
    let kflagAllowed = false;
    let vlenAllowed = false;
    switch (kind) {
      case BTF_KIND.int:
        tail = 1;
        break;
      case BTF_KIND.ptr:
      case BTF_KIND.typedef:
      case BTF_KIND.volatile:
      case BTF_KIND.const:
      case BTF_KIND.restrict:
        tail = 0;
        break;
      case BTF_KIND.type_tag:
        tail = 0;
        kflagAllowed = true;
        break;
      case BTF_KIND.array:
        tail = 3;
        break;
      case BTF_KIND.struct:
      case BTF_KIND.union:
        tail = 3 * vlen;
        kflagAllowed = vlenAllowed = true;
        break;
      case BTF_KIND.enum:
        tail = 2 * vlen;
        kflagAllowed = vlenAllowed = true;
        break;
      case BTF_KIND.enum64:
        tail = 3 * vlen;
        kflagAllowed = vlenAllowed = true;
        break;
      case BTF_KIND.fwd:
        tail = 0;
        kflagAllowed = true;
        break;
      case BTF_KIND.func:
        tail = 0;
        vlenAllowed = true; // vlen is the linkage
        if (vlen >= LINKAGES.length) throw new BtfError(`BTF type ${id}: func has unknown linkage ${vlen}`);
        break;
      case BTF_KIND.func_proto:
        tail = 2 * vlen;
        vlenAllowed = true;
        break;
      case BTF_KIND.var:
        tail = 1;
        break;
      case BTF_KIND.datasec:
        tail = 3 * vlen;
        vlenAllowed = true;
        break;
      case BTF_KIND.float:
        tail = 0;
        break;
      case BTF_KIND.decl_tag:
        tail = 1;
        kflagAllowed = true;
        break;
      default:
        throw new BtfError(`BTF type ${id} has unknown kind ${kind}`);
    }
    if (kflag && !kflagAllowed) throw new BtfError(`BTF type ${id}: kind_flag is not valid for ${KIND_BY_NUMBER[kind]}`);
    if (vlen !== 0 && !vlenAllowed) throw new BtfError(`BTF type ${id}: vlen ${vlen} is not valid for ${KIND_BY_NUMBER[kind]}`);
    const q = p + 3;
    if (q + tail > nw) throw new BtfError(`BTF type ${id} is truncated (needs ${(3 + tail) * 4} bytes)`);

    switch (kind) {
      case BTF_KIND.int:
        if ((w[q]! & ~INT_MASK) !== 0 || (w[q]! & 0xff) > 128) {
          throw new BtfError(`BTF type ${id}: invalid int encoding 0x${w[q]!.toString(16)}`);
        }
        break;
      case BTF_KIND.ptr:
      case BTF_KIND.typedef:
      case BTF_KIND.volatile:
      case BTF_KIND.const:
      case BTF_KIND.restrict:
      case BTF_KIND.type_tag:
      case BTF_KIND.func:
        noteRef(sizeOrType, id);
        break;
      case BTF_KIND.array:
        noteRef(w[q]!, id);
        noteRef(w[q + 1]!, id);
        break;
      case BTF_KIND.struct:
      case BTF_KIND.union:
        for (let k = q; k < q + tail; k += 3) {
          checkStr(w[k]!, id, 'member name');
          noteRef(w[k + 1]!, id);
        }
        break;
      case BTF_KIND.enum:
        for (let k = q; k < q + tail; k += 2) checkStr(w[k]!, id, 'enumerator name');
        break;
      case BTF_KIND.enum64:
        for (let k = q; k < q + tail; k += 3) checkStr(w[k]!, id, 'enumerator name');
        break;
      case BTF_KIND.func_proto:
        noteRef(sizeOrType, id);
        for (let k = q; k < q + tail; k += 2) {
          checkStr(w[k]!, id, 'parameter name');
          noteRef(w[k + 1]!, id);
        }
        break;
      case BTF_KIND.var:
        noteRef(sizeOrType, id);
        if (w[q]! >= LINKAGES.length) throw new BtfError(`BTF type ${id}: var has unknown linkage ${w[q]!}`);
        break;
      case BTF_KIND.datasec:
        for (let k = q; k < q + tail; k += 3) noteRef(w[k]!, id);
        break;
      case BTF_KIND.decl_tag:
        noteRef(sizeOrType, id);
        if ((w[q]! | 0) < -1) throw new BtfError(`BTF type ${id}: invalid component index ${w[q]! | 0}`);
        break;
    }
    offsets[count++] = p;
    p = q + tail;
  }
  if (count > 0 && maxRef >= firstId + count) {
    throw new BtfError(`BTF type ${maxRefFrom} refers to type ${maxRef}, but the last type id is ${firstId + count - 1}`);
  }
  return { offsets, count };
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** 32-bit FNV-1a over the UTF-8 bytes of `s` (the same value #hashAt computes from raw bytes). */
function hashString(s: string): number {
  let h = FNV_OFFSET;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0x80) {
      h = FNV_OFFSET;
      for (const b of Buffer.from(s, 'utf8')) h = Math.imul(h ^ b, FNV_PRIME);
      return h >>> 0;
    }
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  return h >>> 0;
}
