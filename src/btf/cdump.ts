// BTF as text: a C header (what `bpftool btf dump ... format c` makes, e.g. vmlinux.h) and JSON.
//
// C output
// --------
// Every named struct, union, enum and typedef is defined once, in type id order, except that a type
// is pulled ahead of the first one that needs it. "Needs" follows C's rules:
//   - a struct/union used by value (a member, an array element, a typedef used by value) must be
//     complete first: its definition is emitted before;
//   - one reached only through a pointer, or as a function parameter or return type, only needs a
//     declaration: `struct foo;` is emitted before the first such use, unless the definition came
//     first. Cycles through pointers are therefore never a problem;
//   - typedefs and enums have no forward declarations: they are always defined before use.
// Anonymous structs, unions and enums are written inline where they are used; an anonymous enum
// that nothing uses is written at top level (its enumerators are constants a program may want).
// FUNC, VAR, DATASEC and DECL_TAG are not written; TYPE_TAGs are dropped.
//
// Names: C has one namespace for struct/union/enum tags and one for typedefs and enumerators. The
// first type (lowest id) with a given name in a namespace keeps it, later ones get `name___2`,
// `name___3`, ... (the suffix libbpf's CO-RE ignores, so relocations still match the kernel's
// name). Names that are C keywords or compiler builtins (`__builtin_va_list`) are renamed the same
// way; characters that cannot be in an identifier become `_`. A FWD of a struct/union that is also
// defined takes the definition's name. Member names that are keywords get a `_` suffix.
// For split BTF (a module's), the base's types are written too: the header stands alone.
//
// Layout: each struct is laid out the way clang lays out the emitted C for the BPF target (natural
// alignment, System V bitfield rules, __int128 16-byte aligned). Where that would not put a member
// at its BTF offset, the gap is filled with anonymous bitfields (`long: 64;`, `int: 24;`, which do
// not change the struct's alignment). Where no padding can work (a member below its type's
// alignment, a bitfield straddling its storage unit, a size that is not a multiple of the
// alignment) the struct is `__attribute__((packed))`. When a non-packed struct's BTF size is larger
// than its members rounded up to their alignment, it gets the smallest
// `__attribute__((aligned(N)))` that produces that size (if no struct embeds it at an offset or
// in a struct size that N does not divide; otherwise the tail is padded). Enums whose BTF size
// differs from what their values give in C get `__attribute__((mode(...)))`.
//
// JSON output
// -----------
// { "format": "tsbpf-btf", "version": 1, "types": [ ...one object per type id, in id order... ] }
// Each type object has the fields of its BtfType interface in ./types.ts, in this order: id, kind,
// name, then the kind's own fields in the order they are declared there. Kind names are lowercase
// (`int`, `ptr`, `struct`, `enum64`, `func_proto`, ...). The only change: enum64 values are
// decimal strings (they can exceed 2^53); enum values are numbers (negative when signed).
// Optional flags (`attribute` of type_tag/decl_tag) appear only when set. Void (id 0) is not listed.

import { BtfError } from '../errors.js';
import type { Btf } from './btf.js';
import type { BtfEnum, BtfEnum64, BtfMember, BtfType } from './types.js';

export interface DumpCOptions {
  /** Include-guard macro. Default `__VMLINUX_H__`. */
  guard?: string;
  /** Wrap the types in the `preserve_access_index` pragma (for CO-RE), as bpftool does. Default true. */
  preserveAccessIndex?: boolean;
  /** Text of a comment placed first in the header (no comment by default). */
  comment?: string;
  /**
   * Write only these types (ids, or names: every type of that name) and what they need, instead
   * of every type. Unknown names throw BtfError.
   */
  types?: readonly (number | string)[];
  /**
   * Append `_Static_assert`s of the size of every struct/union written (named, or behind a
   * typedef) and of the byte offset of every non-bitfield member, from the BTF numbers: compiling
   * the header then proves the layout. Default false.
   */
  layoutAsserts?: boolean;
}

export interface DumpJsonOptions {
  /** For split BTF: also list the base's types (default: only this spec's own ids). */
  includeBase?: boolean;
}

/** One entry of `dumpBtfAsJson(...).types`. */
export type BtfJsonType = Record<string, unknown> & { id: number; kind: string; name: string };

export interface BtfJson {
  format: 'tsbpf-btf';
  version: 1;
  types: BtfJsonType[];
}

/** The types of `btf` as a C header. Deterministic: the same BTF always gives the same text. */
export function dumpBtfAsC(btf: Btf, options: DumpCOptions = {}): string {
  return new CDumper(btf).dump(options);
}

/** The types of `btf` as plain JSON-able data (see the shape at the top of this file). */
export function dumpBtfAsJson(btf: Btf, options: DumpJsonOptions = {}): BtfJson {
  const first = options.includeBase || !btf.base ? 1 : btf.base.length;
  const types: BtfJsonType[] = [];
  for (let id = first; id < btf.length; id++) types.push(typeAsJson(btf.type(id)));
  return { format: 'tsbpf-btf', version: 1, types };
}

function typeAsJson(t: BtfType): BtfJsonType {
  const head = { id: t.id, kind: t.kind, name: t.name };
  switch (t.kind) {
    case 'void':
      return head;
    case 'int':
      return { ...head, size: t.size, signed: t.signed, char: t.char, bool: t.bool, bitsOffset: t.bitsOffset, bits: t.bits };
    case 'ptr':
    case 'typedef':
    case 'volatile':
    case 'const':
    case 'restrict':
      return { ...head, type: t.type };
    case 'type_tag':
      return t.attribute ? { ...head, type: t.type, attribute: true } : { ...head, type: t.type };
    case 'array':
      return { ...head, type: t.type, indexType: t.indexType, nelems: t.nelems };
    case 'struct':
    case 'union':
      return {
        ...head,
        size: t.size,
        members: t.members.map((m) => ({ name: m.name, type: m.type, bitOffset: m.bitOffset, bitfieldSize: m.bitfieldSize })),
      };
    case 'enum':
      return { ...head, size: t.size, signed: t.signed, values: t.values.map((v) => ({ name: v.name, value: v.value })) };
    case 'enum64':
      return { ...head, size: t.size, signed: t.signed, values: t.values.map((v) => ({ name: v.name, value: v.value.toString() })) };
    case 'fwd':
      return { ...head, fwdKind: t.fwdKind };
    case 'func':
      return { ...head, type: t.type, linkage: t.linkage };
    case 'func_proto':
      return { ...head, returnType: t.returnType, params: t.params.map((p) => ({ name: p.name, type: p.type })) };
    case 'var':
      return { ...head, type: t.type, linkage: t.linkage };
    case 'datasec':
      return { ...head, size: t.size, vars: t.vars.map((v) => ({ type: v.type, offset: v.offset, size: v.size })) };
    case 'float':
      return { ...head, size: t.size };
    case 'decl_tag':
      return t.attribute
        ? { ...head, type: t.type, componentIdx: t.componentIdx, attribute: true }
        : { ...head, type: t.type, componentIdx: t.componentIdx };
  }
}

// ---- C ----

const C_KEYWORDS = new Set(
  (
    'auto break case char const continue default do double else enum extern float for goto if inline int long ' +
    'register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while ' +
    '_Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local ' +
    'typeof ' +
    'asm __asm__ __attribute__ __extension__ __inline __inline__ __restrict __restrict__ __volatile__ __const ' +
    '__signed__ __typeof__ __alignof__ __label__ __int128 __auto_type _Float16 __fp16 __bf16'
  ).split(' '),
);
/** Typedef names clang predefines; a BTF typedef of the same name cannot be redeclared differently. */
const RESERVED_IDENTS = new Set(['__int128_t', '__uint128_t', '__NSConstantString', '__builtin_va_list', '__builtin_ms_va_list']);

const INT_WORDS = new Set(['signed', 'unsigned', 'char', 'short', 'int', 'long', '_Bool', '__int128']);

/** `name` as a valid C identifier (keywords are left to the caller). */
const VALID_IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function identifier(name: string): string {
  if (VALID_IDENT.test(name)) return name;
  let s = name.replace(/[^A-Za-z0-9_]/g, '_');
  if (s === '' || /^[0-9]/.test(s)) s = '_' + s;
  return s;
}

function isReserved(s: string): boolean {
  return C_KEYWORDS.has(s) || RESERVED_IDENTS.has(s) || s.startsWith('__builtin_');
}

/** A C namespace: hands out unique names, first come first served. */
class Namespace {
  readonly #used = new Set<string>();
  take(raw: string): string {
    const base = identifier(raw);
    if (!isReserved(base) && !this.#used.has(base)) {
      this.#used.add(base);
      return base;
    }
    for (let n = 2; ; n++) {
      const cand = `${base}___${n}`;
      if (!this.#used.has(cand)) {
        this.#used.add(cand);
        return cand;
      }
    }
  }
}

const QUALIFIERS = ['const', 'volatile', 'restrict'];

const PAD_TYPES: [bits: number, name: string][] = [
  [8, 'char'],
  [16, 'short'],
  [32, 'int'],
  [64, 'long'],
];

/** One line of a struct body: a BTF member, or an anonymous padding bitfield. */
type Item = { member: BtfMember; width: number } | { pad: string; bits: number } | { raw: string };

interface Layout {
  packed: boolean;
  /** `aligned(N)` attribute, or 0. */
  alignedAttr: number;
  /** Alignment clang gives the emitted type. */
  align: number;
  items: Item[];
  /** Set when even the packed layout cannot reproduce the BTF offsets (broken input). */
  inexact?: boolean;
}

const roundUp = (v: number, a: number): number => Math.ceil(v / a) * a;
const lowBit = (v: number): number => (v === 0 ? Infinity : v & -v);

const enum State {
  None = 0,
  InProgress = 1,
  Done = 2,
}

class CDumper {
  readonly #btf: Btf;
  /** Tag names (struct, union, enum, fwd) and ordinary identifiers (typedefs), by type id. */
  readonly #names = new Map<number, string>();
  /** Enumerator names by enum type id. */
  readonly #enumerators = new Map<number, string[]>();
  /** FWD id -> the struct/union it declares, when this BTF has its definition. */
  readonly #fwdAlias = new Map<number, number>();
  /** Anonymous enums that some written type uses (they are inlined there, not written at top level). */
  readonly #usedAnonEnums = new Set<number>();
  readonly #layouts = new Map<number, Layout>();
  readonly #aligns = new Map<number, number>();
  /** Largest alignment a struct may be given without breaking a struct that embeds it. */
  #embedCap?: Map<number, number>;
  #state!: Uint8Array;
  #declared!: Uint8Array;
  #visitingAnon = new Set<number>();
  #out: string[] = [];
  /** Composite ids written (named, or anonymous behind a typedef), for layoutAsserts. */
  #written: { id: number; cName: string }[] = [];

  constructor(btf: Btf) {
    this.#btf = btf;
  }

  #t(id: number): BtfType {
    return this.#btf.type(id);
  }

  dump(options: DumpCOptions): string {
    const btf = this.#btf;
    const n = btf.length;
    this.#state = new Uint8Array(n);
    this.#declared = new Uint8Array(n);
    this.#assignNames();

    const guard = options.guard ?? '__VMLINUX_H__';
    const pai = options.preserveAccessIndex ?? true;
    const out = this.#out;
    if (options.comment !== undefined) out.push(`/* ${options.comment.replace(/\*\//g, '* /')} */\n`);
    out.push(`#ifndef ${guard}\n#define ${guard}\n\n`);
    if (pai) {
      out.push(
        '#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n' +
          '#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n' +
          '#endif\n\n',
      );
    }
    if (options.types) {
      for (const r of options.types) {
        if (typeof r === 'number') {
          if (!Number.isInteger(r) || r < 0 || r >= n) throw new BtfError(`type id ${r} is not in this BTF (0..${n - 1})`);
          this.#emitRoot(r, true);
        } else {
          const found = btf.typesByName(r);
          if (found.length === 0) throw new BtfError(`no BTF type named ${JSON.stringify(r)}`);
          for (const t of found) this.#emitRoot(t.id, true);
        }
      }
    } else {
      for (let id = 1; id < n; id++) this.#emitRoot(id, false);
    }
    if (options.layoutAsserts) this.#emitAsserts();
    if (pai) out.push('#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n');
    out.push(`#endif /* ${guard} */\n`);
    return out.join('');
  }

  // ---- names ----

  #assignNames(): void {
    const btf = this.#btf;
    const n = btf.length;
    const tags = new Namespace();
    const idents = new Namespace();
    // Func protos that a written type can reach (not those only FUNCs use).
    const protoUsed = new Set<number>();
    const fwds: number[] = [];
    for (let id = 1; id < n; id++) {
      const t = this.#t(id);
      switch (t.kind) {
        case 'struct':
        case 'union':
        case 'enum':
        case 'enum64':
          if (t.name !== '') this.#names.set(id, tags.take(t.name));
          break;
        case 'fwd':
          if (t.name !== '') fwds.push(id);
          break;
      }
      this.#forEachRef(t, (ref) => {
        if (this.#t(ref).kind === 'func_proto') protoUsed.add(ref);
      });
    }
    for (const id of fwds) {
      const t = this.#t(id) as Extract<BtfType, { kind: 'fwd' }>;
      const def = btf.typesByName(t.name).find((d) => d.kind === t.fwdKind);
      if (def) {
        this.#fwdAlias.set(id, def.id);
        this.#names.set(id, this.#names.get(def.id)!);
      } else {
        this.#names.set(id, tags.take(t.name));
      }
    }
    for (let id = 1; id < n; id++) {
      const t = this.#t(id);
      if (t.kind === 'func_proto' && !protoUsed.has(id)) continue;
      this.#forEachRef(t, (ref) => {
        const r = this.#t(ref);
        if ((r.kind === 'enum' || r.kind === 'enum64') && r.name === '') this.#usedAnonEnums.add(ref);
      });
    }
    for (let id = 1; id < n; id++) {
      const t = this.#t(id);
      if (t.kind === 'typedef') this.#names.set(id, idents.take(t.name));
      else if (t.kind === 'enum' || t.kind === 'enum64') {
        this.#enumerators.set(
          id,
          (t.values as { name: string }[]).map((v) => idents.take(v.name)),
        );
      }
    }
  }

  /** Calls `f` with each type `t` refers to directly (what FUNC, VAR, DATASEC, DECL_TAG refer to is not counted). */
  #forEachRef(t: BtfType, f: (id: number) => void): void {
    switch (t.kind) {
      case 'ptr':
      case 'typedef':
      case 'const':
      case 'volatile':
      case 'restrict':
      case 'type_tag':
      case 'array':
        f(t.type);
        return;
      case 'struct':
      case 'union':
        for (const m of t.members) f(m.type);
        return;
      case 'func_proto':
        f(t.returnType);
        for (const p of t.params) f(p.type);
        return;
    }
  }

  // ---- order ----

  #emitRoot(id: number, explicit: boolean): void {
    const t = this.#t(id);
    switch (t.kind) {
      case 'struct':
      case 'union':
        if (t.name !== '') this.#emitComposite(id);
        else if (explicit) this.#emitAnonTop(id);
        return;
      case 'enum':
      case 'enum64':
        if (t.name !== '' || explicit || !this.#usedAnonEnums.has(id)) this.#emitEnum(id);
        return;
      case 'typedef':
        this.#emitTypedef(id);
        return;
      case 'fwd': {
        const alias = this.#fwdAlias.get(id);
        if (alias === undefined) this.#declare(id);
        else if (explicit) this.#emitComposite(alias);
        return;
      }
      default:
        if (explicit) this.#require(id, true, 0);
    }
  }

  /** An anonymous struct/union named as a root: written as a definition without a declarator. */
  #emitAnonTop(id: number): void {
    if (this.#state[id] !== State.None) return;
    this.#state[id] = State.InProgress;
    for (const m of (this.#t(id) as Extract<BtfType, { kind: 'struct' | 'union' }>).members) this.#require(m.type, true, id);
    this.#out.push(`${this.#compositeDef(id, 0)};\n\n`);
    this.#state[id] = State.Done;
  }

  /**
   * Makes type `id` usable at this point of the output: complete (defined) when `complete`, else at
   * least declared. `self` is the named struct whose body is being written (a pointer to it needs no
   * declaration).
   */
  #require(id: number, complete: boolean, self: number): void {
    for (let hops = 0; hops <= this.#btf.length; hops++) {
      const t = this.#t(id);
      switch (t.kind) {
        case 'ptr':
          complete = false;
          id = t.type;
          continue;
        case 'const':
        case 'volatile':
        case 'restrict':
        case 'type_tag':
          id = t.type;
          continue;
        case 'array':
          complete = true;
          id = t.type;
          continue;
        case 'func_proto':
          this.#require(t.returnType, false, self);
          for (const p of t.params) if (p.type !== 0) this.#require(p.type, false, self);
          return;
        case 'struct':
        case 'union':
          if (t.name !== '') {
            if (complete) this.#emitComposite(id);
            else if (id !== self) this.#declare(id);
          } else {
            if (this.#visitingAnon.has(id)) return; // a loop only broken BTF can have
            this.#visitingAnon.add(id);
            for (const m of t.members) this.#require(m.type, true, self);
            this.#visitingAnon.delete(id);
          }
          return;
        case 'fwd': {
          const alias = this.#fwdAlias.get(id);
          if (alias !== undefined) {
            id = alias;
            continue;
          }
          this.#declare(id);
          return;
        }
        case 'enum':
        case 'enum64':
          if (t.name !== '') this.#emitEnum(id);
          return;
        case 'typedef':
          this.#emitTypedef(id);
          if (!complete) return;
          id = t.type;
          continue;
        default:
          return;
      }
    }
    throw new BtfError(`BTF type ${id} is part of a reference cycle`);
  }

  /** `struct foo;` unless foo is already declared or defined. */
  #declare(id: number): void {
    if (this.#state[id] === State.Done || this.#declared[id]) return;
    this.#declared[id] = 1;
    const t = this.#t(id);
    const kw = t.kind === 'fwd' ? t.fwdKind : t.kind;
    this.#out.push(`${kw} ${this.#names.get(id)};\n\n`);
  }

  #emitComposite(id: number): void {
    if (this.#state[id] !== State.None) return;
    this.#state[id] = State.InProgress;
    const t = this.#t(id) as Extract<BtfType, { kind: 'struct' | 'union' }>;
    for (const m of t.members) this.#require(m.type, true, id);
    this.#out.push(`${this.#compositeDef(id, 0)};\n\n`);
    this.#written.push({ id, cName: `${t.kind} ${this.#names.get(id)}` });
    this.#state[id] = State.Done;
  }

  #emitEnum(id: number): void {
    if (this.#state[id] !== State.None) return;
    this.#state[id] = State.Done;
    this.#out.push(`${this.#enumDef(id, 0)};\n\n`);
  }

  #emitTypedef(id: number): void {
    if (this.#state[id] !== State.None) return;
    this.#state[id] = State.InProgress;
    const t = this.#t(id) as Extract<BtfType, { kind: 'typedef' }>;
    this.#require(t.type, false, 0);
    const name = this.#names.get(id)!;
    this.#out.push(`typedef ${this.#decl(t.type, name, 0)};\n\n`);
    const target = this.#t(this.#skipTags(t.type));
    if ((target.kind === 'struct' || target.kind === 'union') && target.name === '') {
      this.#written.push({ id: target.id, cName: name });
    }
    this.#state[id] = State.Done;
  }

  #skipTags(id: number): number {
    for (let t = this.#t(id); t.kind === 'type_tag'; t = this.#t(id)) id = t.type;
    return id;
  }

  // ---- declarations ----

  /** The C declaration of `inner` (a declarator; '' for an abstract one) as type `id`. */
  #decl(id: number, inner: string, lvl: number, quals = ''): string {
    for (let hops = 0; hops <= this.#btf.length; hops++) {
      const t = this.#t(id);
      switch (t.kind) {
        case 'type_tag':
          id = t.type;
          continue;
        case 'const':
        case 'volatile':
        case 'restrict': {
          const seen = new Set<string>();
          let cur: BtfType = t;
          while (cur.kind === 'const' || cur.kind === 'volatile' || cur.kind === 'restrict' || cur.kind === 'type_tag') {
            seen.add(cur.kind);
            cur = this.#t(cur.type);
          }
          const words = QUALIFIERS.filter((q) => seen.has(q));
          if (cur.kind === 'ptr') {
            const q = words.join(' ');
            inner = inner ? `${q} ${inner}` : q;
          } else if (cur.kind !== 'func_proto') {
            // On an array (or what an array holds): qualifies the element type.
            const have = quals ? quals.split(' ') : [];
            for (const w of words) if (!have.includes(w)) have.push(w);
            quals = have.join(' ');
          }
          id = cur.id;
          continue;
        }
        case 'ptr': {
          let target = this.#t(t.type);
          while (target.kind === 'const' || target.kind === 'volatile' || target.kind === 'restrict' || target.kind === 'type_tag') {
            target = this.#t(target.type);
          }
          inner = target.kind === 'array' || target.kind === 'func_proto' ? `(*${inner})` : `*${inner}`;
          id = t.type;
          continue;
        }
        case 'array':
          inner = `${inner}[${t.nelems}]`;
          id = t.type;
          continue;
        case 'func_proto': {
          const params: string[] = [];
          t.params.forEach((p, i) => {
            if (p.type === 0 && i === t.params.length - 1) params.push('...');
            else params.push(this.#decl(p.type, '', lvl));
          });
          inner = `${inner}(${params.length ? params.join(', ') : 'void'})`;
          id = t.returnType;
          continue;
        }
        default: {
          const base = this.#baseName(t, lvl);
          const head = quals ? `${quals} ${base}` : base;
          if (inner === '') return head;
          return `${head} ${inner}`;
        }
      }
    }
    throw new BtfError(`BTF type ${id} is part of a reference cycle`);
  }

  #baseName(t: BtfType, lvl: number): string {
    switch (t.kind) {
      case 'void':
        return 'void';
      case 'int':
        return intName(t);
      case 'float':
        return t.size === 4 ? 'float' : t.size === 8 ? 'double' : identifier(t.name);
      case 'struct':
      case 'union':
        return t.name === '' ? this.#compositeDef(t.id, lvl) : `${t.kind} ${this.#names.get(t.id)}`;
      case 'enum':
      case 'enum64':
        return t.name === '' ? this.#enumDef(t.id, lvl) : `enum ${this.#names.get(t.id)}`;
      case 'fwd':
        return `${t.fwdKind} ${this.#names.get(t.id)}`;
      case 'typedef':
        return this.#names.get(t.id)!;
      default:
        // FUNC, VAR, DATASEC, DECL_TAG have no C type; nothing a written type refers to is one.
        return 'void';
    }
  }

  // ---- definitions ----

  #enumDef(id: number, lvl: number): string {
    const t = this.#t(id) as BtfEnum | BtfEnum64;
    const name = t.name === '' ? 'enum' : `enum ${this.#names.get(id)}`;
    if (t.values.length === 0) return name;
    const names = this.#enumerators.get(id)!;
    const pfx = '\t'.repeat(lvl + 1);
    let body = `${name} {\n`;
    let natural = 4;
    let anyNegative = false;
    t.values.forEach((v, i) => {
      const value = BigInt(v.value);
      if (value < 0n) anyNegative = true;
      if (value < -(1n << 31n) || value > 0xffffffffn) natural = 8;
      body += `${pfx}${names[i]} = ${enumLiteral(value, t.signed)},\n`;
    });
    // Values in (INT_MAX, UINT_MAX] with a negative one need a 64-bit type.
    if (anyNegative && t.values.some((v) => BigInt(v.value) > 0x7fffffffn)) natural = 8;
    body += `${'\t'.repeat(lvl)}}`;
    if (t.size !== natural) {
      const mode = ({ 1: 'QI', 2: 'HI', 4: 'SI', 8: 'DI' } as Record<number, string>)[t.size];
      if (mode) body += ` __attribute__((mode(${mode})))`;
    }
    return body;
  }

  #compositeDef(id: number, lvl: number): string {
    const t = this.#t(id) as Extract<BtfType, { kind: 'struct' | 'union' }>;
    const layout = this.#layout(id);
    const head = t.name === '' ? t.kind : `${t.kind} ${this.#names.get(id)}`;
    const attrs: string[] = [];
    if (layout.packed) attrs.push('packed');
    if (layout.alignedAttr) attrs.push(`aligned(${layout.alignedAttr})`);
    const tail = attrs.length ? ` __attribute__((${attrs.join(', ')}))` : '';
    if (layout.items.length === 0) return `${head} {}${tail}`;
    const pfx = '\t'.repeat(lvl + 1);
    let body = `${head} {\n`;
    for (const item of layout.items) {
      if ('pad' in item) {
        body += `${pfx}${item.pad}: ${item.bits};\n`;
      } else if ('raw' in item) {
        body += `${pfx}${item.raw};\n`;
      } else {
        const m = item.member;
        const decl = this.#decl(m.type, m.name === '' ? '' : memberName(m.name), lvl + 1);
        body += `${pfx}${decl}${item.width ? `: ${item.width}` : ''};\n`;
      }
    }
    return `${body}${'\t'.repeat(lvl)}}${tail}`;
  }

  // ---- layout ----

  /** Alignment clang gives the emitted C of type `id`. */
  #align(id: number): number {
    const known = this.#aligns.get(id);
    if (known !== undefined) return known;
    let a = 1;
    const t = this.#t(id);
    switch (t.kind) {
      case 'int':
      case 'enum':
      case 'enum64':
      case 'float':
        a = t.size >= 1 && t.size <= 16 ? 1 << Math.floor(Math.log2(t.size)) : 1;
        break;
      case 'ptr':
        a = 8;
        break;
      case 'array':
      case 'typedef':
      case 'const':
      case 'volatile':
      case 'restrict':
      case 'type_tag':
        a = this.#align(t.type);
        break;
      case 'struct':
      case 'union':
        a = this.#layout(id).align;
        break;
      case 'fwd': {
        const alias = this.#fwdAlias.get(id);
        a = alias === undefined ? 1 : this.#align(alias);
        break;
      }
    }
    this.#aligns.set(id, a);
    return a;
  }

  #sizeof(id: number): number {
    try {
      return this.#btf.sizeof(id);
    } catch {
      return 0;
    }
  }

  /** Bit width when `m` is a bitfield (kind_flag, or an int type narrower than its storage), else 0. */
  #width(m: BtfMember): { width: number; offset: number } {
    if (m.bitfieldSize !== 0) return { width: m.bitfieldSize, offset: m.bitOffset };
    const r = this.#btf.resolve(m.type);
    if (r.kind === 'int' && (r.bitsOffset !== 0 || r.bits !== r.size * 8)) {
      return { width: r.bits, offset: m.bitOffset + r.bitsOffset };
    }
    return { width: 0, offset: m.bitOffset };
  }

  #layout(id: number): Layout {
    const known = this.#layouts.get(id);
    if (known) return known;
    // Placeholder against (broken) by-value cycles.
    this.#layouts.set(id, { packed: false, alignedAttr: 0, align: 1, items: [] });
    const t = this.#t(id) as Extract<BtfType, { kind: 'struct' | 'union' }>;
    const layout =
      (t.kind === 'union' ? this.#unionLayout(t, false) : this.#structLayout(t, false)) ??
      (t.kind === 'union' ? this.#unionLayout(t, true) : this.#structLayout(t, true))!;
    this.#layouts.set(id, layout);
    return layout;
  }

  /** Layout without packed (undefined when that cannot work) or with it (always gives one). */
  #structLayout(t: Extract<BtfType, { kind: 'struct' }>, packed: boolean): Layout | undefined {
    const items: Item[] = [];
    let cur = 0;
    let maxAlign = 1;
    let inexact = false;
    for (const m of t.members) {
      const { width, offset } = this.#width(m);
      const a = this.#align(m.type);
      const size = this.#sizeof(m.type);
      if (width === 0) {
        const at = packed ? 8 : a * 8;
        if (offset % at !== 0) {
          if (!packed) return undefined;
          inexact = true;
        }
        const natural = roundUp(cur, at);
        if (natural > offset) {
          if (!packed) return undefined;
          inexact = true;
        } else if (natural < offset) {
          pad(items, cur, offset);
        }
        items.push({ member: m, width: 0 });
        cur = Math.max(natural, offset) + size * 8;
      } else {
        const place = (c: number): number => (packed || (c % (a * 8)) + width <= size * 8 ? c : roundUp(c, a * 8));
        let at = place(cur);
        if (at < offset) {
          pad(items, cur, offset);
          at = place(offset);
        }
        if (at !== offset) {
          if (!packed) return undefined;
          inexact = true;
        }
        items.push({ member: m, width });
        cur = Math.max(at, offset) + width;
      }
      if (!packed) maxAlign = Math.max(maxAlign, a);
    }
    const sizeBits = t.size * 8;
    let align = maxAlign;
    let alignedAttr = 0;
    if (sizeBits % (align * 8) !== 0) {
      if (!packed) return undefined;
    }
    let end = roundUp(cur, align * 8);
    if (end > sizeBits) {
      if (!packed) return undefined;
      inexact = true;
    }
    if (end < sizeBits && !packed) {
      const p = this.#alignFor(t, cur);
      if (p) {
        alignedAttr = align = p;
        end = roundUp(cur, align * 8);
      }
    }
    if (end < sizeBits) pad(items, cur, sizeBits);
    const layout: Layout = { packed, alignedAttr, align: packed ? 1 : align, items };
    if (inexact) layout.inexact = true;
    return layout;
  }

  #unionLayout(t: Extract<BtfType, { kind: 'union' }>, packed: boolean): Layout | undefined {
    const items: Item[] = [];
    let maxAlign = 1;
    let maxBits = 0;
    let inexact = false;
    for (const m of t.members) {
      const { width, offset } = this.#width(m);
      if (offset !== 0) inexact = true;
      const a = this.#align(m.type);
      if (!packed) maxAlign = Math.max(maxAlign, a);
      maxBits = Math.max(maxBits, width || this.#sizeof(m.type) * 8);
      items.push({ member: m, width });
    }
    const sizeBits = t.size * 8;
    let align = maxAlign;
    let alignedAttr = 0;
    if (sizeBits % (align * 8) !== 0 && !packed) return undefined;
    let end = roundUp(maxBits, align * 8);
    if (end > sizeBits) {
      if (!packed) return undefined;
      inexact = true;
    }
    if (end < sizeBits && !packed) {
      const p = this.#alignFor(t, maxBits);
      if (p) {
        alignedAttr = align = p;
        end = roundUp(maxBits, align * 8);
      }
    }
    if (end < sizeBits) {
      // A union member that is only padding: an anonymous struct of anonymous bitfields.
      const padItems: Item[] = [];
      pad(padItems, 0, sizeBits);
      items.push({ raw: `struct {${padItems.map((p) => ('pad' in p ? ` ${p.pad}: ${p.bits};` : '')).join('')} }` });
    }
    const layout: Layout = { packed, alignedAttr, align: packed ? 1 : align, items };
    if (inexact) layout.inexact = true;
    return layout;
  }

  /**
   * The smallest alignment above the natural one that rounds `endBits` up to exactly the BTF size,
   * if every struct embedding this one allows it; else 0.
   */
  #alignFor(t: Extract<BtfType, { kind: 'struct' | 'union' }>, endBits: number): number {
    const cap = this.#embedCaps().get(t.id) ?? Infinity;
    for (let p = 2; p <= t.size && p <= cap; p *= 2) {
      if (roundUp(endBits, p * 8) === t.size * 8) return t.size % p === 0 ? p : 0;
    }
    return 0;
  }

  #embedCaps(): Map<number, number> {
    if (this.#embedCap) return this.#embedCap;
    const caps = new Map<number, number>();
    const btf = this.#btf;
    for (let id = 1; id < btf.length; id++) {
      const t = this.#t(id);
      if (t.kind !== 'struct' && t.kind !== 'union') continue;
      for (const m of t.members) {
        let inner = this.#t(m.type);
        for (let hops = 0; hops < 64; hops++) {
          if (inner.kind === 'array' || inner.kind === 'typedef' || inner.kind === 'const' || inner.kind === 'volatile' || inner.kind === 'restrict' || inner.kind === 'type_tag') {
            inner = this.#t(inner.type);
          } else break;
        }
        if (inner.kind !== 'struct' && inner.kind !== 'union') continue;
        const cap = Math.min(m.bitOffset % 8 ? 1 : lowBit(m.bitOffset / 8), lowBit(t.size), caps.get(inner.id) ?? Infinity);
        caps.set(inner.id, cap);
      }
    }
    this.#embedCap = caps;
    return caps;
  }

  // ---- layout asserts ----

  #emitAsserts(): void {
    const out = this.#out;
    out.push('/* Layout checks: sizes and member offsets from BTF. */\n');
    for (const { id, cName } of this.#written) {
      const t = this.#t(id) as Extract<BtfType, { kind: 'struct' | 'union' }>;
      out.push(`_Static_assert(sizeof(${cName}) == ${t.size}, "sizeof(${cName})");\n`);
      const visit = (c: Extract<BtfType, { kind: 'struct' | 'union' }>, base: number, path: string, seen: Set<number>): void => {
        for (const m of c.members) {
          const { width, offset } = this.#width(m);
          const name = m.name === '' ? '' : memberName(m.name);
          const inner = this.#btf.resolve(m.type);
          if (width !== 0) continue;
          if (name !== '') {
            out.push(`_Static_assert(__builtin_offsetof(${cName}, ${path}${name}) == ${base + offset / 8}, "${cName}.${path}${name}");\n`);
          }
          // Members of anonymous structs/unions (inlined, so their layout is ours too).
          if ((inner.kind === 'struct' || inner.kind === 'union') && inner.name === '' && !seen.has(inner.id) && offset % 8 === 0) {
            seen.add(inner.id);
            visit(inner, base + offset / 8, name === '' ? path : `${path}${name}.`, seen);
            seen.delete(inner.id);
          }
        }
      };
      visit(t, 0, '', new Set([id]));
    }
    out.push('\n');
  }
}

/** Fills bits [cur, to) with anonymous bitfields, each inside one storage unit of its type. */
function pad(items: Item[], cur: number, to: number): void {
  while (cur < to) {
    const inUnit = cur % 64;
    const bits = Math.min(to - cur, 64 - inUnit);
    // The smallest type whose (aligned) unit holds these bits.
    let name = 'long';
    for (const [unit, n] of PAD_TYPES) {
      if ((cur % unit) + bits <= unit) {
        name = n;
        break;
      }
    }
    items.push({ pad: name, bits });
    cur += bits;
  }
}

function memberName(name: string): string {
  const s = identifier(name);
  return isReserved(s) ? `${s}_` : s;
}

/** An int type's C spelling: its BTF name when that is valid C of the same size, else one by size. */
function intName(t: Extract<BtfType, { kind: 'int' }>): string {
  const words = t.name.split(/\s+/).filter((w) => w !== '');
  if (words.length > 0 && words.every((w) => INT_WORDS.has(w)) && spelledSize(words) === t.size) return words.join(' ');
  if (t.bool && t.size === 1) return '_Bool';
  const sign = t.signed ? 'signed' : 'unsigned';
  switch (t.size) {
    case 1:
      return t.char ? 'char' : `${sign} char`;
    case 2:
      return `${sign} short`;
    case 4:
      return `${sign} int`;
    case 8:
      return `${sign} long long`;
    case 16:
      return `${sign} __int128`;
    default:
      return `${sign} char`;
  }
}

/** sizeof() of a C integer type spelled with `words` for the BPF target, or -1 if invalid. */
function spelledSize(words: string[]): number {
  const count = (w: string): number => words.filter((x) => x === w).length;
  const longs = count('long');
  if (count('_Bool')) return words.length === 1 ? 1 : -1;
  if (count('__int128')) return longs || count('char') || count('short') || count('int') ? -1 : 16;
  if (count('char')) return longs || count('short') || count('int') ? -1 : 1;
  if (count('short')) return longs ? -1 : 2;
  if (longs > 2) return -1;
  if (longs) return 8;
  return 4;
}

function enumLiteral(v: bigint, signed: boolean): string {
  if (v >= -(1n << 31n) && v <= 0x7fffffffn) return v.toString();
  if (v > 0 && v <= 0xffffffffn && !signed) return `${v}U`;
  if (v === -(1n << 63n)) return '(-9223372036854775807LL - 1)';
  if (v < 0n || (signed && v <= 0x7fffffffffffffffn)) return `${v}LL`;
  return `${v}ULL`;
}
