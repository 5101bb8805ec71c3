// Input mutation for the fuzzer: a small deterministic PRNG, byte-level mutators, and
// structure-aware ones that know where the fields of ELF, raw BTF and BTF.ext live.
//
// The layout walkers here are deliberately independent of src/: they are tolerant (they stop at
// the first thing that does not make sense instead of throwing) and only need to find field
// positions in seed-like inputs, not to validate anything.

/** xorshift128+ style generator on 32-bit halves, deterministic from its seed. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number, stream = 0) {
    // splitmix32 to spread a small seed over the whole state.
    let s = (seed ^ Math.imul(stream + 1, 0x9e3779b9)) >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next() | 1;
  }

  /** A uniform 32-bit unsigned integer (xoshiro128**). */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.#b, 5), 7), 9) >>> 0;
    const t = this.#b << 9;
    this.#c ^= this.#a;
    this.#d ^= this.#b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return r;
  }

  /** Integer in [0, n). */
  below(n: number): number {
    if (n <= 0) return 0;
    if (n <= 0x100000000) return Math.floor((this.u32() / 0x100000000) * n);
    return Math.floor(this.float() * n);
  }

  float(): number {
    return (this.u32() * 0x200000 + (this.u32() >>> 11)) / 2 ** 53;
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Where a field is: absolute byte offset and width in bytes (1, 2, 4 or 8). */
export interface Field {
  off: number;
  width: 1 | 2 | 4 | 8;
  /** What the field holds, to pick interesting values: a size/offset, a type id, a string offset, a count. */
  role: 'size' | 'id' | 'str' | 'count' | 'flags' | 'kindinfo';
  /** For fields of a BTF type record: that type's id (to make self references and short cycles). */
  self?: number;
}

/**
 * What the mutator knows about an input: byte ranges generic mutations may touch, the fields
 * structure-aware mutations overwrite, and whether the length may change.
 */
export interface Layout {
  /** [start, end) ranges open to byte-level mutation; the whole input when absent. */
  regions?: [number, number][];
  fields: Field[];
  /** false when the input must keep its length (mutations happen in place). */
  resizable: boolean;
  /** Start of the part of the input that truncation/insertion may affect (framing before it stays). */
  tailStart: number;
  /** Hints for interesting values: number of BTF types and string section length, when known. */
  typeCount?: number;
  strLen?: number;
}

// ---------------------------------------------------------------- layout walkers

const SHT_SYMTAB = 2;
const SHT_RELA = 4;
const SHT_REL = 9;
const SHT_PROGBITS = 1;
const SHF_EXECINSTR = 0x4;

export interface ElfSectionInfo {
  name: string;
  type: number;
  flags: number;
  offset: number;
  size: number;
  headerAt: number;
}

/** Section headers of a little-endian ELF64 object, or [] when it does not look like one. */
export function elfSections(buf: Buffer): ElfSectionInfo[] {
  try {
    if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return [];
    const shoff = Number(buf.readBigUInt64LE(40));
    const shentsize = buf.readUInt16LE(58);
    const shnum = buf.readUInt16LE(60);
    const shstrndx = buf.readUInt16LE(62);
    if (shentsize < 64 || shoff + shnum * shentsize > buf.length || shstrndx >= shnum) return [];
    const raw: Omit<ElfSectionInfo, 'name'>[] = [];
    const out: ElfSectionInfo[] = [];
    const nameOffs: number[] = [];
    for (let i = 0; i < shnum; i++) {
      const at = shoff + i * shentsize;
      nameOffs.push(buf.readUInt32LE(at));
      raw.push({
        type: buf.readUInt32LE(at + 4),
        flags: Number(buf.readBigUInt64LE(at + 8)),
        offset: Number(buf.readBigUInt64LE(at + 24)),
        size: Number(buf.readBigUInt64LE(at + 32)),
        headerAt: at,
      });
    }
    const strtab = raw[shstrndx]!;
    if (strtab.offset + strtab.size > buf.length) return [];
    for (let i = 0; i < shnum; i++) {
      const r = raw[i]!;
      let name = '';
      const start = strtab.offset + nameOffs[i]!;
      if (nameOffs[i]! < strtab.size) {
        const end = buf.indexOf(0, start);
        if (end >= 0 && end <= strtab.offset + strtab.size) name = buf.toString('latin1', start, end);
      }
      out.push({ ...r, name });
    }
    return out;
  } catch {
    return [];
  }
}

/** Bytes of section `name` (a view), when the input has it inside its bounds. */
export function sectionBytes(buf: Buffer, name: string): Buffer | undefined {
  const s = elfSections(buf).find((x) => x.name === name);
  if (!s || s.type === 8 || s.offset + s.size > buf.length) return undefined;
  return buf.subarray(s.offset, s.offset + s.size);
}

/** Fields of raw BTF starting at `base`; also the type count and string length it found. */
export function btfFields(buf: Buffer, base: number, end: number): { fields: Field[]; typeCount: number; strLen: number } {
  const fields: Field[] = [];
  let typeCount = 0;
  let strLen = 0;
  if (end - base < 24 || buf.readUInt16LE(base) !== 0xeb9f) return { fields, typeCount, strLen };
  fields.push({ off: base + 2, width: 1, role: 'flags' });
  fields.push({ off: base + 3, width: 1, role: 'flags' });
  for (let o = 4; o < 24; o += 4) fields.push({ off: base + o, width: 4, role: 'size' });
  const hdrLen = buf.readUInt32LE(base + 4);
  const typeOff = buf.readUInt32LE(base + 8);
  const typeLen = buf.readUInt32LE(base + 12);
  strLen = buf.readUInt32LE(base + 20);
  let p = base + hdrLen + typeOff;
  const typesEnd = Math.min(end, p + typeLen);
  // Every type record, up to a cap so that huge BTF (vmlinux.h-based objects) stays cheap to map.
  const maxFields = 4000;
  while (p + 12 <= typesEnd && fields.length < maxFields) {
    typeCount++;
    const info = buf.readUInt32LE(p + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const self = typeCount;
    fields.push({ off: p, width: 4, role: 'str' });
    fields.push({ off: p + 4, width: 4, role: 'kindinfo' });
    fields.push({ off: p + 8, width: 4, role: kind === 4 || kind === 5 || kind === 6 || kind === 15 || kind === 16 || kind === 19 || kind === 1 ? 'size' : 'id', self });
    p += 12;
    let tail = 0;
    let per = 0;
    let roles: Field['role'][] = [];
    switch (kind) {
      case 1: tail = 4; roles = ['flags']; break;
      case 3: tail = 12; roles = ['id', 'id', 'count']; break;
      case 4: case 5: per = 12; roles = ['str', 'id', 'size']; break;
      case 6: per = 8; roles = ['str', 'count']; break;
      case 13: per = 8; roles = ['str', 'id']; break;
      case 14: tail = 4; roles = ['flags']; break;
      case 15: per = 12; roles = ['id', 'size', 'size']; break;
      case 17: tail = 4; roles = ['count']; break;
      case 19: per = 12; roles = ['str', 'count', 'count']; break;
      default: break;
    }
    const n = per ? vlen : tail ? 1 : 0;
    const step = per || tail;
    for (let k = 0; k < n && p + step <= typesEnd; k++, p += step) {
      for (let j = 0; j < roles.length; j++) fields.push({ off: p + 4 * j, width: 4, role: roles[j]!, self });
    }
    if (n > 0 && p + step > typesEnd) break;
  }
  return { fields, typeCount, strLen };
}

/** Fields of BTF.ext starting at `base`: header offsets/lengths, record sizes, section headers, records. */
export function btfExtFields(buf: Buffer, base: number, end: number): Field[] {
  const fields: Field[] = [];
  if (end - base < 24 || buf.readUInt16LE(base) !== 0xeb9f) return fields;
  const hdrLen = buf.readUInt32LE(base + 4);
  for (let o = 4; o < Math.min(hdrLen, 32) && base + o + 4 <= end; o += 4) fields.push({ off: base + o, width: 4, role: 'size' });
  const body = base + hdrLen;
  const subs: [number, Field['role'][]][] = [
    [8, ['size', 'id']],
    [16, ['size', 'str', 'str', 'count']],
    [24, ['size', 'id', 'str', 'count']],
  ];
  for (const [at, roles] of subs) {
    if (at + 8 > hdrLen || base + at + 8 > end) continue;
    const off = buf.readUInt32LE(base + at);
    const len = buf.readUInt32LE(base + at + 4);
    let p = body + off;
    const subEnd = Math.min(end, p + len);
    if (p + 4 > subEnd) continue;
    const recSize = buf.readUInt32LE(p);
    fields.push({ off: p, width: 4, role: 'size' });
    p += 4;
    let guard = 0;
    while (p + 8 <= subEnd && guard++ < 1000) {
      fields.push({ off: p, width: 4, role: 'str' });
      fields.push({ off: p + 4, width: 4, role: 'count' });
      const num = buf.readUInt32LE(p + 4);
      p += 8;
      if (recSize < 4) break;
      for (let k = 0; k < num && p + recSize <= subEnd && fields.length < 4000; k++, p += recSize) {
        for (let j = 0; j < roles.length && 4 * j + 4 <= recSize; j++) fields.push({ off: p + 4 * j, width: 4, role: roles[j]! });
      }
      if (fields.length >= 4000) break;
    }
  }
  return fields;
}

/** ELF header, section header, symbol and relocation fields, plus those of the embedded .BTF/.BTF.ext. */
export function elfLayout(buf: Buffer): Layout {
  const fields: Field[] = [];
  const layout: Layout = { fields, resizable: true, tailStart: 0 };
  if (buf.length < 64) return layout;
  for (const off of [4, 5, 6, 7]) fields.push({ off, width: 1, role: 'flags' });
  fields.push({ off: 16, width: 2, role: 'flags' }, { off: 18, width: 2, role: 'flags' }, { off: 20, width: 4, role: 'flags' });
  for (const off of [24, 32, 40]) fields.push({ off, width: 8, role: 'size' });
  fields.push({ off: 48, width: 4, role: 'flags' });
  for (const off of [52, 54, 56, 58, 60, 62]) fields.push({ off, width: 2, role: off === 60 || off === 62 ? 'count' : 'size' });
  for (const s of elfSections(buf)) {
    const h = s.headerAt;
    fields.push(
      { off: h, width: 4, role: 'str' },
      { off: h + 4, width: 4, role: 'flags' },
      { off: h + 8, width: 8, role: 'flags' },
      { off: h + 24, width: 8, role: 'size' },
      { off: h + 32, width: 8, role: 'size' },
      { off: h + 40, width: 4, role: 'count' },
      { off: h + 44, width: 4, role: 'count' },
      { off: h + 48, width: 8, role: 'size' },
      { off: h + 56, width: 8, role: 'size' },
    );
    if (s.offset + s.size > buf.length) continue;
    if (s.type === SHT_SYMTAB) {
      for (let p = s.offset; p + 24 <= s.offset + s.size && fields.length < 20000; p += 24) {
        fields.push(
          { off: p, width: 4, role: 'str' },
          { off: p + 4, width: 1, role: 'flags' },
          { off: p + 5, width: 1, role: 'flags' },
          { off: p + 6, width: 2, role: 'count' },
          { off: p + 8, width: 8, role: 'size' },
          { off: p + 16, width: 8, role: 'size' },
        );
      }
    } else if (s.type === SHT_REL || s.type === SHT_RELA) {
      const ent = s.type === SHT_REL ? 16 : 24;
      for (let p = s.offset; p + ent <= s.offset + s.size && fields.length < 20000; p += ent) {
        fields.push({ off: p, width: 8, role: 'size' }, { off: p, width: 4, role: 'size' }, { off: p + 8, width: 4, role: 'flags' }, { off: p + 12, width: 4, role: 'count' });
        if (ent === 24) fields.push({ off: p + 16, width: 8, role: 'size' });
      }
    } else if (s.name === '.BTF') {
      const b = btfFields(buf, s.offset, s.offset + s.size);
      fields.push(...b.fields);
      layout.typeCount = b.typeCount;
      layout.strLen = b.strLen;
    } else if (s.name === '.BTF.ext') {
      fields.push(...btfExtFields(buf, s.offset, s.offset + s.size));
    } else if (s.name === '.maps' || s.name === 'maps' || s.name.startsWith('.rodata') || s.name.startsWith('.data')) {
      for (let p = s.offset; p + 4 <= s.offset + Math.min(s.size, 256); p += 4) fields.push({ off: p, width: 4, role: 'size' });
    }
  }
  return layout;
}

/** Raw BTF as a whole input. */
export function btfLayout(buf: Buffer): Layout {
  const b = btfFields(buf, 0, buf.length);
  return { fields: b.fields, resizable: true, tailStart: 0, typeCount: b.typeCount, strLen: b.strLen };
}

/**
 * The btf-ext target's input framing: u32 LE length of the .BTF blob, the .BTF blob, then the
 * .BTF.ext blob (everything after). Mutations stay inside the .BTF.ext part, plus a few on the .BTF
 * header and type ids so that the two disagree in interesting ways.
 */
export function frameBtfExt(btf: Buffer, ext: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(btf.length);
  return Buffer.concat([len, btf, ext]);
}

export function unframeBtfExt(input: Buffer): { btf: Buffer; ext: Buffer } | undefined {
  if (input.length < 4) return undefined;
  const n = input.readUInt32LE(0);
  if (4 + n > input.length) return undefined;
  return { btf: input.subarray(4, 4 + n), ext: input.subarray(4 + n) };
}

export function btfExtLayout(buf: Buffer): Layout {
  const f = unframeBtfExt(buf);
  if (!f) return { fields: [], resizable: true, tailStart: 0 };
  const start = 4 + f.btf.length;
  const b = btfFields(buf, 4, start);
  const fields = btfExtFields(buf, start, buf.length);
  return {
    fields,
    regions: [[start, buf.length]],
    resizable: true,
    tailStart: start,
    typeCount: b.typeCount,
    strLen: b.strLen,
  };
}

/**
 * The core target's input: one selector byte (0: relocate against vmlinux, 1: against
 * bpf/core_target.o's BTF), then a whole ELF object. Mutations happen in place, in .BTF, .BTF.ext
 * and the executable sections, so the object stays loadable often enough to reach the relocator.
 */
export function coreLayout(buf: Buffer): Layout {
  const elf = buf.subarray(1);
  const regions: [number, number][] = [];
  const fields: Field[] = [];
  let typeCount: number | undefined;
  let strLen: number | undefined;
  for (const s of elfSections(elf)) {
    if (s.offset + s.size > elf.length || s.size === 0) continue;
    const start = 1 + s.offset;
    const end = start + s.size;
    if (s.name === '.BTF') {
      regions.push([start, end]);
      const b = btfFields(buf, start, end);
      fields.push(...b.fields);
      typeCount = b.typeCount;
      strLen = b.strLen;
    } else if (s.name === '.BTF.ext') {
      regions.push([start, end]);
      fields.push(...btfExtFields(buf, start, end));
    } else if (s.type === SHT_PROGBITS && s.flags & SHF_EXECINSTR) {
      regions.push([start, end]);
      // The immediates and offsets of instructions: what relocations check and patch.
      for (let p = start; p + 8 <= end && fields.length < 20000; p += 8) {
        fields.push({ off: p + 1, width: 1, role: 'flags' }, { off: p + 2, width: 2, role: 'size' }, { off: p + 4, width: 4, role: 'size' });
      }
    }
  }
  return { fields, regions, resizable: false, tailStart: 1, typeCount, strLen };
}

// ---------------------------------------------------------------- mutation

const MASKS: Record<number, bigint> = { 1: 0xffn, 2: 0xffffn, 4: 0xffffffffn, 8: 0xffffffffffffffffn };

function readField(buf: Buffer, f: Field): bigint {
  switch (f.width) {
    case 1: return BigInt(buf[f.off]!);
    case 2: return BigInt(buf.readUInt16LE(f.off));
    case 4: return BigInt(buf.readUInt32LE(f.off));
    default: return buf.readBigUInt64LE(f.off);
  }
}

function writeField(buf: Buffer, f: Field, v: bigint): void {
  v &= MASKS[f.width]!;
  switch (f.width) {
    case 1: buf[f.off] = Number(v); break;
    case 2: buf.writeUInt16LE(Number(v), f.off); break;
    case 4: buf.writeUInt32LE(Number(v), f.off); break;
    default: buf.writeBigUInt64LE(v, f.off);
  }
}

/** An interesting value for field `f` of `buf`. */
function interesting(rng: Rng, buf: Buffer, f: Field, layout: Layout): bigint {
  const cur = readField(buf, f);
  const mask = MASKS[f.width]!;
  const len = BigInt(buf.length);
  const common = [0n, 1n, mask, mask - 1n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, len, len - 1n, len + 1n, len / 2n, cur + 1n, cur - 1n, cur * 2n, cur + 8n, cur - 8n];
  switch (rng.below(4)) {
    case 0:
      return rng.pick(common);
    case 1:
      switch (f.role) {
        case 'id': {
          const n = BigInt(layout.typeCount ?? 100);
          if (f.self !== undefined && rng.chance(0.4)) return BigInt(f.self + rng.below(5) - 2);
          return rng.pick([n, n + 1n, n - 1n, n + 2n, BigInt(rng.below(Number(n) + 2)), 0x7fffffffn]);
        }
        case 'str': {
          const n = BigInt(layout.strLen ?? 100);
          return rng.pick([n, n - 1n, n + 1n, BigInt(rng.below(Number(n) + 1)), cur + 1n, cur - 1n]);
        }
        case 'kindinfo': {
          // Change kind, vlen or kind_flag of a BTF type.
          const c = Number(cur);
          switch (rng.below(4)) {
            case 0: return BigInt(((c & ~0x1f000000) | (rng.below(32) << 24)) >>> 0);
            case 1: return BigInt(((c & ~0xffff) | rng.pick([0, 1, 0xffff, (c & 0xffff) + 1, (c & 0xffff) - 1 & 0xffff, rng.below(0x10000)])) >>> 0);
            case 2: return BigInt((c ^ 0x80000000) >>> 0);
            default: return BigInt((c | (rng.below(0x100) << 16)) >>> 0);
          }
        }
        case 'count':
          return rng.pick([0n, 1n, 2n, 0xffffn, 0x10000n, 0x3fffffffn, 0x40000000n, mask, cur + 1n, cur * 4n, BigInt(rng.below(64))]);
        case 'size':
          return rng.pick([0n, 1n, 3n, 4n, 7n, 8n, 12n, 16n, 24n, 32n, 64n, cur + 4n, cur - 4n, cur + 12n, len - cur, mask / 2n]);
        default:
          return cur ^ (1n << BigInt(rng.below(f.width * 8)));
      }
    case 2:
      return BigInt(rng.u32()) | (f.width === 8 && rng.chance(0.3) ? BigInt(rng.u32()) << 32n : 0n);
    default:
      return cur + BigInt(rng.below(33) - 16);
  }
}

/** Picks a random byte position inside the regions open to mutation. */
function position(rng: Rng, buf: Buffer, layout: Layout): number {
  const regions = layout.regions;
  if (!regions || regions.length === 0) return rng.below(buf.length);
  const [s, e] = rng.pick(regions);
  return Math.min(buf.length - 1, s + rng.below(Math.max(1, e - s)));
}

export type LayoutFn = (buf: Buffer) => Layout;

/**
 * Returns a mutated copy of `input`: 1 to several stacked mutations. `other` is a second corpus
 * entry for splicing. Output length is capped at `maxLen`.
 */
export function mutate(rng: Rng, input: Buffer, layout: Layout, other: Buffer | undefined, maxLen: number): Buffer {
  let buf = Buffer.from(input);
  const rounds = 1 + (rng.chance(0.5) ? 0 : rng.below(4));
  for (let r = 0; r < rounds; r++) {
    if (buf.length === 0) break;
    const choice = rng.below(100);
    if (choice < 40 && layout.fields.length > 0) {
      // Structure-aware: overwrite one field with an interesting value.
      const f = rng.pick(layout.fields);
      if (f.off + f.width <= buf.length) writeField(buf, f, interesting(rng, buf, f, layout));
    } else if (choice < 55) {
      const p = position(rng, buf, layout);
      buf[p] = buf[p]! ^ (1 << rng.below(8));
    } else if (choice < 65) {
      const p = position(rng, buf, layout);
      buf[p] = rng.pick([0, 0xff, rng.below(256), 0x7f, 0x80, 1]);
    } else if (choice < 72) {
      // A run of random or repeated bytes.
      const p = position(rng, buf, layout);
      const n = Math.min(buf.length - p, 1 + rng.below(16));
      const v = rng.chance(0.5) ? rng.below(256) : -1;
      for (let k = 0; k < n; k++) buf[p + k] = v < 0 ? rng.below(256) : v;
    } else if (choice < 78) {
      // Copy a chunk of the input over another place of it.
      const from = position(rng, buf, layout);
      const to = position(rng, buf, layout);
      const n = Math.min(buf.length - from, buf.length - to, 1 + rng.below(64));
      buf.copy(buf, to, from, from + n);
    } else if (!layout.resizable) {
      const p = position(rng, buf, layout);
      buf[p] = (buf[p]! + rng.below(35) - 17) & 0xff;
    } else if (choice < 86) {
      // Truncation, mostly of the tail.
      const keep = layout.tailStart + rng.below(Math.max(1, buf.length - layout.tailStart));
      buf = buf.subarray(0, rng.chance(0.7) ? Math.max(keep, buf.length - 1 - rng.below(64)) : keep);
    } else if (choice < 92) {
      const p = layout.tailStart + rng.below(Math.max(1, buf.length - layout.tailStart));
      const n = 1 + rng.below(rng.chance(0.8) ? 8 : 256);
      const ins = Buffer.alloc(n, rng.chance(0.5) ? 0 : rng.below(256));
      buf = Buffer.concat([buf.subarray(0, p), ins, buf.subarray(p)]);
    } else if (choice < 97) {
      const p = layout.tailStart + rng.below(Math.max(1, buf.length - layout.tailStart));
      const n = 1 + rng.below(rng.chance(0.8) ? 8 : 256);
      buf = Buffer.concat([buf.subarray(0, p), buf.subarray(Math.min(buf.length, p + n))]);
    } else if (other && other.length > layout.tailStart) {
      // Splice: our head, the other entry's tail.
      const cut = layout.tailStart + rng.below(Math.max(1, Math.min(buf.length, other.length) - layout.tailStart));
      buf = Buffer.concat([buf.subarray(0, cut), other.subarray(cut)]);
    }
    if (buf.length > maxLen) buf = buf.subarray(0, maxLen);
  }
  return buf;
}
