// CO-RE ("compile once, run everywhere") relocation of BPF instructions.
//
// clang records, for each instruction whose value depends on a type layout, a
// bpf_core_relo: the instruction, a root type in the object's own ("local")
// BTF, an access string ("0:1:2": root index, then member or array indexes)
// and what the instruction needs (a field's byte offset, a type's size, an
// enumerator's value, ...). At load time the same question is asked of the
// running kernel's ("target") BTF and the instruction is rewritten with the
// kernel's answer.
//
// This module reproduces libbpf's algorithm (src/relo_core.c and the
// candidate search in src/libbpf.c), including its corner cases, so that an
// object relocates here exactly as it would with libbpf:
//
//  1. Parse the access string against the local BTF into a "spec": the raw
//     index list, the high-level accessors (named members and array indexes;
//     anonymous struct/union hops are only in the raw list) and the bit offset.
//  2. Candidates: every target type of a compatible kind whose name, minus a
//     "___flavor" suffix, equals the local name minus its suffix. vmlinux is
//     searched first; module BTFs only when vmlinux has no candidate at all.
//  3. Match the local spec on each candidate (members by name, through
//     anonymous members, arrays within bounds, compatible leaf types; or the
//     type-compatibility / "types match" relations for type relocations).
//     Every matching candidate must give the same bit offset and the same
//     value, otherwise the relocation is ambiguous. Candidates that did not
//     match are dropped from the list kept for later relocations of the same
//     local type (libbpf does this too, and the result can depend on it).
//  4. Compute the local ("original") and target values, check that the
//     instruction really holds the local value, and patch the instruction:
//     ALU/ALU64 immediate, LDX/ST/STX offset (and access size, when a field
//     changed size and that is safe), or the 64-bit immediate of ld_imm64.
//  5. When nothing matched: existence relocations answer 0 and type
//     relocations 0, everything else replaces the instruction with a call to
//     an invalid helper (CORE_POISON_IMM). The verifier removes it if it is
//     dead code (guarded by bpf_core_field_exists() and friends) and rejects
//     the program with "invalid func unknown#195896080" if it is reachable.
//
// Errors that make libbpf refuse the whole object (a malformed access string,
// ambiguity, an instruction that does not hold the expected local value, an
// instruction form that cannot be patched) are reported with `fatal: true`;
// the instruction is poisoned as well, so it can never run unrelocated.

import { BtfError } from '../errors.js';
import type { Btf } from './btf.js';
import {
  CORE_RELO_KIND,
  type BtfArray,
  type BtfComposite,
  type BtfEnum,
  type BtfEnum64,
  type BtfFuncProto,
  type BtfFwd,
  type BtfInt,
  type BtfType,
  type CoreRelo,
} from './types.js';

/**
 * Immediate of the helper call that replaces an instruction whose relocation failed, as libbpf does
 * (0xbad2310, "bad relo"). If the instruction is reachable the verifier says
 * `invalid func unknown#195896080`.
 */
export const CORE_POISON_IMM = 0xbad2310;

/** Names of the relocation kinds, by CORE_RELO_KIND value. */
export const CORE_RELO_KIND_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [CORE_RELO_KIND.FIELD_BYTE_OFFSET]: 'field_byte_offset',
  [CORE_RELO_KIND.FIELD_BYTE_SIZE]: 'field_byte_size',
  [CORE_RELO_KIND.FIELD_EXISTS]: 'field_exists',
  [CORE_RELO_KIND.FIELD_SIGNED]: 'field_signed',
  [CORE_RELO_KIND.FIELD_LSHIFT_U64]: 'field_lshift_u64',
  [CORE_RELO_KIND.FIELD_RSHIFT_U64]: 'field_rshift_u64',
  [CORE_RELO_KIND.TYPE_ID_LOCAL]: 'type_id_local',
  [CORE_RELO_KIND.TYPE_ID_TARGET]: 'type_id_target',
  [CORE_RELO_KIND.TYPE_EXISTS]: 'type_exists',
  [CORE_RELO_KIND.TYPE_SIZE]: 'type_size',
  [CORE_RELO_KIND.ENUMVAL_EXISTS]: 'enumval_exists',
  [CORE_RELO_KIND.ENUMVAL_VALUE]: 'enumval_value',
  [CORE_RELO_KIND.TYPE_MATCHES]: 'type_matches',
});

export interface CoreResult {
  /** Index of the relocated instruction in the linked program. */
  insn: number;
  /** CORE_RELO_KIND value. */
  kind: number;
  /** e.g. 'field_byte_offset' ('unknown' for a kind this module does not know). */
  kindName: string;
  /** In source terms: "struct task_struct.__state", "enum foo::BAR", "struct foo (type exists)". */
  description: string;
  /** Relocated, or an existence/type relocation legitimately answered 0. */
  ok: boolean;
  /** The instruction (both halves of an ld_imm64) was replaced by a call to helper CORE_POISON_IMM. */
  poisoned: boolean;
  /**
   * libbpf would refuse to load the object because of this relocation (ambiguous candidates, an
   * instruction that does not hold the local value, a malformed record, ...). The instruction is
   * poisoned too. A loader that wants libbpf's behaviour throws when any result is fatal.
   */
  fatal: boolean;
  /** Why it failed, or why the answer is 0 (e.g. "struct task_struct has no member state in the target"). */
  reason?: string;
  /** The value computed from the local BTF, which the instruction must hold (libbpf's orig_val, a u64). */
  localValue?: number | bigint;
  /** The value patched in (absent when poisoned). */
  targetValue?: number | bigint;
  /** The matching target type (first one when several flavors matched): its BTF index in `targets`, and id. */
  target?: { btfIndex: number; typeId: number };
}

export interface CoreOptions {
  /** The program being relocated; accepted for the caller's bookkeeping, results do not repeat it. */
  programName?: string;
  /**
   * Candidate lists to share between calls for the programs of one object. libbpf keeps one list
   * per local type for the whole object and narrows it as relocations find candidates that do not
   * match, which can decide later relocations. Without it, each call starts afresh.
   */
  cache?: CoreCandidateCache;
}

/** Per-object state of the candidate search; see CoreOptions.cache. Opaque. */
export class CoreCandidateCache {
  // Makes the class nominal: only `new CoreCandidateCache()` is one.
  readonly #brand = true;
}

interface CacheState {
  local: Btf;
  targets: readonly Btf[];
  /** Candidates per local type id, narrowed as relocations find some that do not match. */
  lists: Map<number, Candidate[]>;
}

const cacheStates = new WeakMap<CoreCandidateCache, CacheState>();

/** The candidate lists of `cache` for these BTFs (starting afresh if it was used with others). */
function cacheLists(cache: CoreCandidateCache, local: Btf, targets: readonly Btf[]): Map<number, Candidate[]> {
  const st = cacheStates.get(cache);
  if (st && st.local === local && st.targets.length === targets.length && st.targets.every((t, i) => t === targets[i])) {
    return st.lists;
  }
  const lists = new Map<number, Candidate[]>();
  cacheStates.set(cache, { local, targets: [...targets], lists });
  return lists;
}

interface Candidate {
  btf: Btf;
  /** Index into `targets`. */
  btfIndex: number;
  id: number;
}

/** A high-level accessor: a named member of a struct/union, or an array index (or the root index). */
interface Accessor {
  /** The struct/union holding the member, or the array element type (modifiers skipped). */
  typeId: number;
  idx: number;
  /** Member or enumerator name; undefined for an array index. */
  name?: string;
}

interface Spec {
  btf: Btf;
  /** Root type as recorded (typedefs and modifiers not skipped). */
  rootId: number;
  kind: number;
  /** High-level accessors. */
  acc: Accessor[];
  /** Raw indexes, one per element of the access string (target: one per member hop). */
  raw: number[];
  /** Bit offset of the field, as libbpf's u32. */
  bitOffset: number;
}

/** What a relocation resolved to, as libbpf's bpf_core_relo_res (values are u64). */
interface RelocationValues {
  orig: bigint;
  next: bigint;
  poison: boolean;
  validate: boolean;
  failMemSizeAdjust: boolean;
  origSize: number;
  newSize: number;
  origTypeId: number;
  newTypeId: number;
}

/** A condition under which libbpf fails the whole load. */
class FatalRelocation extends Error {}

/** The result of one side's value computation, before it is combined into RelocationValues. */
type Computed = { poison: true } | { poison: false; val: bigint; fieldSize: number; typeId: number; validate: boolean };

const MAX_SPEC_LEN = 64;
const MAX_RESOLVE_DEPTH = 32;
const TYPE_RECURSION_LEVEL = 32;
const POINTER_SIZE = 8;
const U32_MAX = 0xffffffff;

const INSN_SIZE = 8;
const CLASS_LD = 0x00;
const CLASS_LDX = 0x01;
const CLASS_ST = 0x02;
const CLASS_STX = 0x03;
const CLASS_ALU = 0x04;
const CLASS_ALU64 = 0x07;
const SRC_X = 0x08;
const OP_LD_IMM64 = 0x18;
const OP_CALL = 0x85;
const SIZE_BY_BYTES: Record<number, number> = { 4: 0x00, 2: 0x08, 1: 0x10, 8: 0x18 };
const BYTES_BY_SIZE: Record<number, number> = { 0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8 };
const S16_MAX = 0x7fff;

const K = CORE_RELO_KIND;

function isFieldKind(kind: number): boolean {
  return kind >= K.FIELD_BYTE_OFFSET && kind <= K.FIELD_RSHIFT_U64;
}
function isTypeKind(kind: number): boolean {
  return kind === K.TYPE_ID_LOCAL || kind === K.TYPE_ID_TARGET || kind === K.TYPE_EXISTS || kind === K.TYPE_MATCHES || kind === K.TYPE_SIZE;
}
function isEnumvalKind(kind: number): boolean {
  return kind === K.ENUMVAL_EXISTS || kind === K.ENUMVAL_VALUE;
}

/**
 * Applies the CO-RE relocations of one linked program to `insns` (patched in place) and reports
 * each one. `relos` carry instruction indexes into `insns`, `local` is the object's BTF (the one
 * `relos[].typeId` refers to), `targets` is [vmlinux, ...module BTFs]: candidates are looked for in
 * targets[0] first, and in the others (their own types only, when they are split BTF) only when
 * targets[0] has none, as libbpf does.
 */
export function applyCoreRelocations(
  insns: Buffer,
  relos: readonly CoreRelo[],
  local: Btf,
  targets: readonly Btf[],
  opts: CoreOptions = {},
): CoreResult[] {
  const lists = cacheLists(opts.cache ?? new CoreCandidateCache(), local, targets);
  const count = Math.floor(insns.length / INSN_SIZE);
  return relos.map((relo) => applyOne(insns, count, relo, local, targets, lists));
}

function applyOne(
  insns: Buffer,
  count: number,
  relo: CoreRelo,
  local: Btf,
  targets: readonly Btf[],
  lists: Map<number, Candidate[]>,
): CoreResult {
  const result: CoreResult = {
    insn: relo.insnOff,
    kind: relo.kind,
    kindName: CORE_RELO_KIND_NAMES[relo.kind] ?? 'unknown',
    description: rawDescription(local, relo),
    ok: false,
    poisoned: false,
    fatal: false,
  };
  try {
    if (!Number.isInteger(relo.insnOff) || relo.insnOff < 0 || relo.insnOff >= count) {
      throw new FatalRelocation(`instruction ${relo.insnOff} is outside the program (${count} instructions)`);
    }
    const localSpec = parseSpec(local, relo);
    result.description = describeSpec(localSpec);
    let values: RelocationValues;
    let why: string | undefined;
    if (relo.kind === K.TYPE_ID_LOCAL) {
      // Needs no target: the id the program's BTF will have in the kernel (ids are kept as they are).
      const id = BigInt(relo.typeId);
      values = { ...noSizes(), orig: id, next: id, poison: false, validate: false };
    } else {
      const resolved = resolveAgainstCandidates(relo, local, localSpec, targets, lists);
      values = resolved.values;
      why = resolved.why;
      if (resolved.target) result.target = resolved.target;
    }
    result.localValue = toResultValue(values.orig);
    const patched = patchInstruction(insns, relo.insnOff, count, values);
    if (patched.poisoned) {
      result.poisoned = true;
      result.reason = patched.reason ?? why ?? 'no match in the target';
    } else {
      result.ok = true;
      result.targetValue = toResultValue(values.next);
      if (why !== undefined && values.next === 0n) result.reason = why;
    }
  } catch (e) {
    // Malformed BTF (a BtfError from a lookup) is as fatal as any other inconsistency here.
    if (!(e instanceof FatalRelocation) && !(e instanceof BtfError)) throw e;
    result.fatal = true;
    result.reason = (e as Error).message;
    if (Number.isInteger(relo.insnOff) && relo.insnOff >= 0 && relo.insnOff < count) {
      poison(insns, relo.insnOff, count);
      result.poisoned = true;
    }
  }
  return result;
}

function toResultValue(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function noSizes(): Pick<RelocationValues, 'failMemSizeAdjust' | 'origSize' | 'newSize' | 'origTypeId' | 'newTypeId'> {
  return { failMemSizeAdjust: false, origSize: 0, newSize: 0, origTypeId: 0, newTypeId: 0 };
}

// ---- candidates ----

interface Resolution {
  values: RelocationValues;
  /** Why no candidate matched (set when none did). */
  why?: string;
  target?: { btfIndex: number; typeId: number };
}

function resolveAgainstCandidates(
  relo: CoreRelo,
  local: Btf,
  localSpec: Spec,
  targets: readonly Btf[],
  lists: Map<number, Candidate[]>,
): Resolution {
  const localType = local.type(relo.typeId);
  if (localType.name === '') {
    throw new FatalRelocation(`${CORE_RELO_KIND_NAMES[relo.kind]} relocation of an anonymous type is not supported`);
  }
  let cands = lists.get(relo.typeId);
  if (!cands) {
    cands = findCandidates(localType, targets);
    lists.set(relo.typeId, cands);
  }
  let best: { values: RelocationValues; spec: Spec; cand: Candidate } | undefined;
  const kept: Candidate[] = [];
  const misses: string[] = [];
  for (const cand of cands) {
    const m = matchSpec(localSpec, cand.btf, cand.id);
    if (!m.matched) {
      if (!misses.includes(m.why)) misses.push(m.why);
      continue;
    }
    const values = computeValues(relo.kind, localSpec, m.spec);
    if (!best) {
      best = { values, spec: m.spec, cand };
    } else if (m.spec.bitOffset !== best.spec.bitOffset) {
      throw new FatalRelocation(
        `ambiguous: ${describeCandidate(best.cand)} and ${describeCandidate(cand)} both match but put the field at different bit offsets (${best.spec.bitOffset} vs ${m.spec.bitOffset})`,
      );
    } else if (values.poison !== best.values.poison || values.next !== best.values.next) {
      throw new FatalRelocation(
        `ambiguous: ${describeCandidate(best.cand)} gives ${best.values.poison ? 'failure' : best.values.next} but ${describeCandidate(cand)} gives ${values.poison ? 'failure' : values.next}`,
      );
    }
    kept.push(cand);
  }
  if (best) {
    // Later relocations of the same local type only consider what matched here.
    lists.set(relo.typeId, kept);
    return { values: best.values, target: { btfIndex: best.cand.btfIndex, typeId: best.cand.id } };
  }
  const why =
    cands.length === 0
      ? `no ${kindWord(localType)} named ${essentialName(localType.name)} in the target${targets.length > 1 ? ' (vmlinux or modules)' : ''}`
      : misses.join('; ');
  return { values: computeValues(relo.kind, localSpec, undefined), why };
}

function describeCandidate(c: Candidate): string {
  const t = c.btf.type(c.id);
  return `${typeLabel(t)} [${c.id}${c.btfIndex > 0 ? ` in target ${c.btfIndex}` : ''}]`;
}

function findCandidates(localType: BtfType, targets: readonly Btf[]): Candidate[] {
  const essential = essentialName(localType.name);
  const out: Candidate[] = [];
  for (let i = 0; i < targets.length; i++) {
    // Only modules' own types: their base is vmlinux, searched already.
    const btf = targets[i]!;
    const firstId = i === 0 || !btf.base ? 1 : btf.base.length;
    for (const id of targetIndex(btf, firstId).idsWithEssentialName(essential)) {
      const t = btf.type(id);
      if (kindsCompatible(t, localType)) out.push({ btf, btfIndex: i, id });
    }
    // Modules are searched only when vmlinux has nothing.
    if (i === 0 && out.length > 0) break;
  }
  return out;
}

/**
 * Lookup of target types by essential name. Exact names go through Btf.typesByName (lazily indexed by
 * the Btf itself); names with a ___flavor suffix are found once per BTF, by walking the names.
 */
class TargetIndex {
  readonly #btf: Btf;
  readonly #firstId: number;
  /** btf.length when the caches were filled: a BTF that gained types since is indexed again. */
  #length = -1;
  #flavored?: Map<string, string[]>;
  readonly #cache = new Map<string, number[]>();

  constructor(btf: Btf, firstId: number) {
    this.#btf = btf;
    this.#firstId = firstId;
  }

  /** Ids (>= firstId, ascending) of types whose name reduces to `essential`. */
  idsWithEssentialName(essential: string): number[] {
    if (this.#length !== this.#btf.length) {
      this.#length = this.#btf.length;
      this.#flavored = undefined;
      this.#cache.clear();
    }
    const hit = this.#cache.get(essential);
    if (hit) return hit;
    const names = [...(this.#flavoredNames().get(essential) ?? [])];
    if (essentialName(essential) === essential) names.push(essential);
    const ids = new Set<number>();
    for (const n of names) {
      for (const t of this.#btf.typesByName(n)) if (t.id >= this.#firstId) ids.add(t.id);
    }
    const sorted = [...ids].sort((a, b) => a - b);
    this.#cache.set(essential, sorted);
    return sorted;
  }

  #flavoredNames(): Map<string, string[]> {
    if (this.#flavored) return this.#flavored;
    const byEssential = new Map<string, string[]>();
    const add = (name: string): void => {
      if (!FLAVOR_RE.test(name)) return;
      const e = essentialName(name);
      const list = byEssential.get(e);
      if (!list) byEssential.set(e, [name]);
      else if (!list.includes(name)) list.push(name);
    };
    const btf = this.#btf;
    if (btf.length - this.#firstId <= SCAN_TYPES_LIMIT) {
      // Small BTF (an object's, a module's, one built with addType): read every type's name.
      for (let id = this.#firstId; id < btf.length; id++) add(btf.type(id).name);
    } else {
      // Large parsed BTF (vmlinux): walk the string section instead of decoding ~100k types. Every
      // parsed type name is one of these strings or a suffix of one.
      for (let off = 0; ; ) {
        let s: string;
        try {
          s = btf.stringAt(off);
        } catch {
          break;
        }
        if (s.includes('___')) {
          const last = lastFlavorSeparator(s);
          for (let k = 0; k <= last; k++) add(s.slice(k));
        }
        off += (NON_ASCII_RE.test(s) ? Buffer.byteLength(s) : s.length) + 1;
      }
    }
    this.#flavored = byEssential;
    return byEssential;
  }
}

/** BTFs with at most this many types are indexed by decoding every type. */
const SCAN_TYPES_LIMIT = 20000;
const FLAVOR_RE = /[^_]___[^_]/;
const NON_ASCII_RE = /[^\x00-\x7f]/;
const indexes = new WeakMap<Btf, Map<number, TargetIndex>>();

function targetIndex(btf: Btf, firstId: number): TargetIndex {
  let byStart = indexes.get(btf);
  if (!byStart) indexes.set(btf, (byStart = new Map()));
  let idx = byStart.get(firstId);
  if (!idx) byStart.set(firstId, (idx = new TargetIndex(btf, firstId)));
  return idx;
}

/** Index of the character before the last "___" that separates a flavor (X___Y, X and Y not '_'), or -1. */
function lastFlavorSeparator(name: string): number {
  for (let i = name.length - 5; i >= 0; i--) {
    if (name[i] !== '_' && name[i + 1] === '_' && name[i + 2] === '_' && name[i + 3] === '_' && name[i + 4] !== '_') return i;
  }
  return -1;
}

/** A name without its ___flavor suffix: "task_struct___v1" → "task_struct". */
export function essentialName(name: string): string {
  const i = lastFlavorSeparator(name);
  return i < 0 ? name : name.slice(0, i + 1);
}

// ---- BTF helpers with libbpf's semantics ----

type Composite = BtfComposite<'struct' | 'union'>;

function isComposite(t: BtfType): t is Composite {
  return t.kind === 'struct' || t.kind === 'union';
}
function isAnyEnum(t: BtfType): t is BtfEnum | BtfEnum64 {
  return t.kind === 'enum' || t.kind === 'enum64';
}
function kindsCompatible(a: BtfType, b: BtfType): boolean {
  return a.kind === b.kind || (isAnyEnum(a) && isAnyEnum(b));
}
function intEncoding(t: BtfInt): number {
  return (t.signed ? 1 : 0) | (t.char ? 2 : 0) | (t.bool ? 4 : 0);
}

/** Size in bytes as libbpf computes it (pointer = 8, flexible array = 0); throws FatalRelocation. */
function resolveSize(btf: Btf, id: number): number {
  let t = btf.type(id);
  let nelems = 1;
  let size = -1;
  for (let i = 0; i < MAX_RESOLVE_DEPTH && t.kind !== 'void'; i++) {
    switch (t.kind) {
      case 'int':
      case 'struct':
      case 'union':
      case 'enum':
      case 'enum64':
      case 'datasec':
      case 'float':
        size = t.size;
        break;
      case 'ptr':
        size = POINTER_SIZE;
        break;
      case 'typedef':
      case 'volatile':
      case 'const':
      case 'restrict':
      case 'var':
      case 'decl_tag':
      case 'type_tag':
        t = btf.type(t.type);
        continue;
      case 'array':
        if (nelems && t.nelems > Math.floor(U32_MAX / nelems)) throw new FatalRelocation(`size of ${typeLabel(btf.type(id))} overflows`);
        nelems *= t.nelems;
        t = btf.type(t.type);
        continue;
      default:
        throw new FatalRelocation(`${typeLabel(t)} has no size`);
    }
    break;
  }
  if (size < 0) throw new FatalRelocation(`${typeLabel(btf.type(id))} has no size`);
  if (nelems && size > Math.floor(U32_MAX / nelems)) throw new FatalRelocation(`size of ${typeLabel(btf.type(id))} overflows`);
  return nelems * size;
}

/** libbpf's u32 bit offset arithmetic: (base + idx * size * 8) mod 2^32. */
function addBits(base: number, idx: number, size: number): number {
  return Number(BigInt.asUintN(32, BigInt(base) + BigInt(idx) * BigInt(size) * 8n));
}

// ---- specs ----

function parseSpec(btf: Btf, relo: CoreRelo): Spec {
  const str = relo.accessor;
  const bad = (why: string): FatalRelocation =>
    new FatalRelocation(`invalid access string "${str}" for ${typeLabel(btf.type(relo.typeId))}: ${why}`);
  if (str === '' || str[0] === ':') throw bad('empty');
  const spec: Spec = { btf, rootId: relo.typeId, kind: relo.kind, acc: [], raw: [], bitOffset: 0 };
  if (isTypeKind(relo.kind)) {
    if (str !== '0') throw bad('type relocations use "0"');
    return spec;
  }
  const number = /\s*([+-]?\d+)/y;
  for (let pos = 0; pos < str.length; ) {
    if (str[pos] === ':') pos++;
    number.lastIndex = pos;
    const m = number.exec(str);
    if (!m) throw bad('expected a number');
    const v = Number(m[1]);
    if (v < 0 || v > 0x7fffffff) throw bad(`index ${m[1]} is out of range`);
    if (spec.raw.length === MAX_SPEC_LEN) throw bad(`more than ${MAX_SPEC_LEN} levels`);
    spec.raw.push(v);
    pos = number.lastIndex;
  }
  if (spec.raw.length === 0) throw bad('empty');

  let t = btf.resolve(relo.typeId);
  let id = t.id;
  const first = spec.raw[0]!;
  if (isEnumvalKind(relo.kind)) {
    if (!isAnyEnum(t) || spec.raw.length > 1 || first >= t.values.length) throw bad('not an enumerator of an enum');
    spec.acc.push({ typeId: id, idx: first, name: t.values[first]!.name });
    return spec;
  }
  if (!isFieldKind(relo.kind)) throw new FatalRelocation(`unknown CO-RE relocation kind ${relo.kind}`);

  spec.acc.push({ typeId: id, idx: first });
  spec.bitOffset = addBits(0, first, resolveSize(btf, id));
  for (let i = 1; i < spec.raw.length; i++) {
    t = btf.resolve(id);
    id = t.id;
    const idx = spec.raw[i]!;
    if (isComposite(t)) {
      if (idx >= t.members.length) throw bad(`${typeLabel(t)} has no member #${idx}`);
      const m = t.members[idx]!;
      spec.bitOffset = (spec.bitOffset + m.bitOffset) >>> 0;
      // Anonymous members are only a hop in the raw spec.
      if (m.name !== '') spec.acc.push({ typeId: id, idx, name: m.name });
      id = m.type;
    } else if (t.kind === 'array') {
      const elem = btf.resolve(t.type);
      id = elem.id;
      if (!isFlexibleArray(btf, spec.acc[spec.acc.length - 1]!, t) && idx >= t.nelems) {
        throw bad(`index ${idx} is out of bounds of ${typeLabel(t)}`);
      }
      spec.acc.push({ typeId: id, idx });
      spec.bitOffset = addBits(spec.bitOffset, idx, resolveSize(btf, id));
    } else {
      throw bad(`level ${i} reaches ${typeLabel(t)}, which has no members or elements`);
    }
  }
  return spec;
}

/** A zero-length array that is the last member of the struct the previous accessor names. */
function isFlexibleArray(btf: Btf, prev: Accessor, arr: BtfArray): boolean {
  if (prev.name === undefined || arr.nelems > 0) return false;
  const holder = btf.type(prev.typeId);
  return isComposite(holder) && prev.idx === holder.members.length - 1;
}

type Match = { matched: true; spec: Spec } | { matched: false; why: string };

/** Matches the local spec on one candidate; throws FatalRelocation where libbpf errors out. */
function matchSpec(local: Spec, btf: Btf, candId: number): Match {
  const spec: Spec = { btf, rootId: candId, kind: local.kind, acc: [], raw: [], bitOffset: 0 };
  const cand = btf.type(candId);
  if (isTypeKind(local.kind)) {
    const ok =
      local.kind === K.TYPE_MATCHES
        ? typesMatch(local.btf, local.rootId, btf, candId, false, TYPE_RECURSION_LEVEL)
        : typesCompatible(local.btf, local.rootId, btf, candId, TYPE_RECURSION_LEVEL);
    return ok
      ? { matched: true, spec }
      : { matched: false, why: `${typeLabel(cand)} in the target ${local.kind === K.TYPE_MATCHES ? 'does not match the local type' : 'is not compatible with the local type'}` };
  }

  const localAcc = local.acc[0]!;
  if (isEnumvalKind(local.kind)) {
    const t = btf.resolve(candId);
    if (!isAnyEnum(t)) return { matched: false, why: `${typeLabel(cand)} in the target is not an enum` };
    const want = essentialName(localAcc.name!);
    for (let i = 0; i < t.values.length; i++) {
      const name = t.values[i]!.name;
      if (essentialName(name) === want) {
        spec.acc.push({ typeId: t.id, idx: i, name });
        spec.raw.push(i);
        return { matched: true, spec };
      }
    }
    return { matched: false, why: `${typeLabel(t)} has no value ${want} in the target` };
  }

  let targId = candId;
  let path = typeLabel(cand);
  for (let i = 0; i < local.acc.length; i++) {
    const acc = local.acc[i]!;
    const t = btf.resolve(targId);
    targId = t.id;
    if (acc.name !== undefined) {
      const found = matchMember(local.btf, acc, btf, targId, spec);
      if (found === undefined) {
        const localMember = (local.btf.type(acc.typeId) as Composite).members[acc.idx]!;
        const why = isComposite(t) && hasMemberNamed(btf, t, acc.name)
          ? `${path}.${acc.name} has type ${typeLabel(btf.resolve(memberType(btf, t, acc.name)!))} in the target, incompatible with local ${typeLabel(local.btf.resolve(localMember.type))}`
          : `${isComposite(t) ? typeLabel(t) : path} has no member ${acc.name} in the target`;
        return { matched: false, why };
      }
      targId = found;
      path += `.${acc.name}`;
    } else {
      if (i > 0) {
        if (t.kind !== 'array') return { matched: false, why: `${path} is not an array in the target` };
        if (!isFlexibleArray(btf, spec.acc[spec.acc.length - 1]!, t) && acc.idx >= t.nelems) {
          return { matched: false, why: `index ${acc.idx} is out of bounds of ${path} (${t.nelems} elements) in the target` };
        }
        targId = btf.resolve(t.type).id;
      }
      if (spec.raw.length === MAX_SPEC_LEN) throw new FatalRelocation(`more than ${MAX_SPEC_LEN} levels in the target`);
      spec.acc.push({ typeId: targId, idx: acc.idx });
      spec.raw.push(acc.idx);
      spec.bitOffset = addBits(spec.bitOffset, acc.idx, resolveSize(btf, targId));
      if (i > 0 || acc.idx > 0) path += `[${acc.idx}]`;
    }
  }
  return { matched: true, spec };
}

function hasMemberNamed(btf: Btf, t: Composite, name: string): boolean {
  return memberType(btf, t, name) !== undefined;
}

/** Type of the member called `name`, looking through anonymous members too (for messages). */
function memberType(btf: Btf, t: Composite, name: string, depth = 0): number | undefined {
  if (depth > MAX_SPEC_LEN) return undefined;
  for (const m of t.members) {
    if (m.name === name) return m.type;
    if (m.name === '') {
      const inner = btf.resolve(m.type);
      if (isComposite(inner)) {
        const found = memberType(btf, inner, name, depth + 1);
        if (found !== undefined) return found;
      }
    }
  }
  return undefined;
}

/**
 * Finds the member `localAcc` names in target composite `targId`, searching anonymous members
 * recursively, appending raw indexes and bit offsets to `spec` as it goes. Returns the member's type
 * id, or undefined when there is no compatible member of that name.
 *
 * Like libbpf, a name found with an incompatible type ends the search without undoing the raw
 * indexes pushed for it (the spec is thrown away then anyway).
 */
function matchMember(localBtf: Btf, localAcc: Accessor, btf: Btf, targId: number, spec: Spec): number | undefined {
  const r = matchMemberRec(localBtf, localAcc, btf, targId, spec);
  return r.found ? r.next : undefined;
}

function matchMemberRec(
  localBtf: Btf,
  localAcc: Accessor,
  btf: Btf,
  targId: number,
  spec: Spec,
): { found: boolean; next: number } {
  const t = btf.resolve(targId);
  targId = t.id;
  if (!isComposite(t)) return { found: false, next: 0 };
  const localMember = (localBtf.type(localAcc.typeId) as Composite).members[localAcc.idx]!;
  for (let i = 0; i < t.members.length; i++) {
    const m = t.members[i]!;
    if (spec.raw.length === MAX_SPEC_LEN) throw new FatalRelocation(`more than ${MAX_SPEC_LEN} levels in the target`);
    // Assume this member is the one, and undo if it is not.
    spec.bitOffset = (spec.bitOffset + m.bitOffset) >>> 0;
    spec.raw.push(i);
    if (m.name === '') {
      const inner = matchMemberRec(localBtf, localAcc, btf, m.type, spec);
      if (inner.found) return inner;
    } else if (m.name === localMember.name) {
      spec.acc.push({ typeId: targId, idx: i, name: m.name });
      const found = fieldsCompatible(localBtf, localMember.type, btf, m.type);
      if (!found) spec.acc.pop();
      return { found, next: m.type };
    }
    spec.bitOffset = (spec.bitOffset - m.bitOffset) >>> 0;
    spec.raw.pop();
  }
  return { found: false, next: 0 };
}

/**
 * Whether a local field type can be relocated to a target field type: structs and unions mix,
 * pointers and floats always match, enums and forward declarations need the same essential name
 * (or one anonymous), ints any size and sign (but not the old offset-encoded bitfields), arrays by
 * element type.
 */
function fieldsCompatible(lb: Btf, lid: number, tb: Btf, tid: number): boolean {
  for (let depth = 0; ; depth++) {
    if (depth > MAX_RESOLVE_DEPTH * 32) throw new FatalRelocation('array nesting too deep');
    const lt = lb.resolve(lid);
    const tt = tb.resolve(tid);
    if (isComposite(lt) && isComposite(tt)) return true;
    if (!kindsCompatible(lt, tt)) return false;
    switch (lt.kind) {
      case 'ptr':
      case 'float':
        return true;
      case 'fwd':
      case 'enum':
      case 'enum64': {
        const ln = essentialName(lt.name);
        const tn = essentialName(tt.name);
        return ln === '' || tn === '' || ln === tn;
      }
      case 'int':
        return lt.bitsOffset === 0 && (tt as BtfInt).bitsOffset === 0;
      case 'array':
        lid = lt.type;
        tid = (tt as BtfArray).type;
        continue;
      default:
        return false;
    }
  }
}

/**
 * The relation used by TYPE_EXISTS, TYPE_SIZE and TYPE_ID_TARGET (root names were matched by the
 * candidate search; further names are ignored): same kind, enums of any size, ints of any size and
 * sign, pointers/arrays/typedefs by what they refer to, function prototypes by arity and
 * compatible parameter and return types.
 */
function typesCompatible(lb: Btf, lid: number, tb: Btf, tid: number, level: number): boolean {
  if (!kindsCompatible(lb.type(lid), tb.type(tid))) return false;
  for (let depth = TYPE_RECURSION_LEVEL; ; ) {
    if (--depth < 0) throw new FatalRelocation('type nesting too deep');
    const lt = lb.resolve(lid);
    const tt = tb.resolve(tid);
    lid = lt.id;
    tid = tt.id;
    if (!kindsCompatible(lt, tt)) return false;
    switch (lt.kind) {
      case 'void':
      case 'struct':
      case 'union':
      case 'enum':
      case 'enum64':
      case 'fwd':
        return true;
      case 'int':
        return lt.bitsOffset === 0 && (tt as BtfInt).bitsOffset === 0;
      case 'ptr':
        lid = lt.type;
        tid = (tt as typeof lt).type;
        continue;
      case 'array':
        lid = lt.type;
        tid = (tt as BtfArray).type;
        continue;
      case 'func_proto': {
        const tp = tt as BtfFuncProto;
        if (lt.params.length !== tp.params.length) return false;
        for (let i = 0; i < lt.params.length; i++) {
          if (level <= 0) throw new FatalRelocation('function prototype nesting too deep');
          if (!typesCompatible(lb, lb.resolve(lt.params[i]!.type).id, tb, tb.resolve(tp.params[i]!.type).id, level - 1)) return false;
        }
        lid = lb.resolve(lt.returnType).id;
        tid = tb.resolve(tp.returnType).id;
        continue;
      }
      default:
        return false;
    }
  }
}

/**
 * The same relation for callers outside relocation (ksym and kfunc declarations vs the kernel's types,
 * as libbpf checks them): false instead of an error when the types nest too deep.
 */
export function typesAreCompatible(local: Btf, localId: number, target: Btf, targetId: number): boolean {
  try {
    return typesCompatible(local, localId, target, targetId, TYPE_RECURSION_LEVEL);
  } catch (e) {
    if (e instanceof FatalRelocation) return false;
    throw e;
  }
}

function namesMatch(localName: string, targName: string): boolean {
  if (targName === '') return localName === '';
  return essentialName(localName) === essentialName(targName);
}

/**
 * libbpf's stricter "types match" relation (TYPE_MATCHES): same kinds and names all the way down;
 * every local member/enumerator must exist in the target (by name); ints of equal size and sign;
 * arrays of equal length; behind a pointer, a struct/union only needs the same name and kind (or a
 * forward declaration of that kind).
 */
function typesMatch(lb: Btf, lid: number, tb: Btf, tid: number, behindPtr: boolean, level: number): boolean {
  if (level <= 0) throw new FatalRelocation('type nesting too deep');
  for (let depth = TYPE_RECURSION_LEVEL; ; ) {
    if (--depth < 0) throw new FatalRelocation('type nesting too deep');
    const lt = lb.resolve(lid);
    const tt = tb.resolve(tid);
    if (!namesMatch(lt.name, tt.name)) return false;
    switch (lt.kind) {
      case 'void':
        return tt.kind === 'void';
      case 'fwd': {
        const localUnion = lt.fwdKind === 'union';
        if (behindPtr && tt.kind !== 'fwd') return (tt.kind === 'struct' && !localUnion) || (tt.kind === 'union' && localUnion);
        if (tt.kind !== 'fwd') return false;
        return localUnion === ((tt as BtfFwd).fwdKind === 'union');
      }
      case 'enum':
      case 'enum64':
        return isAnyEnum(tt) && enumsMatch(lt, tt);
      case 'struct':
      case 'union':
        if (behindPtr) {
          if (lt.kind === tt.kind) return true;
          if (tt.kind !== 'fwd') return false;
          return (lt.kind === 'union') === (tt.fwdKind === 'union');
        }
        if (lt.kind !== tt.kind) return false;
        return compositesMatch(lb, lt, tb, tt as Composite, behindPtr, level);
      case 'int':
        if (tt.kind !== 'int') return false;
        return lt.size === tt.size && lt.signed === tt.signed;
      case 'ptr':
        if (tt.kind !== 'ptr') return false;
        behindPtr = true;
        lid = lt.type;
        tid = tt.type;
        continue;
      case 'array':
        if (tt.kind !== 'array' || lt.nelems !== tt.nelems) return false;
        lid = lt.type;
        tid = tt.type;
        continue;
      case 'func_proto': {
        if (tt.kind !== 'func_proto' || lt.params.length !== tt.params.length) return false;
        for (let i = 0; i < lt.params.length; i++) {
          if (!typesMatch(lb, lt.params[i]!.type, tb, tt.params[i]!.type, behindPtr, level - 1)) return false;
        }
        lid = lt.returnType;
        tid = tt.returnType;
        continue;
      }
      default:
        return false;
    }
  }
}

function enumsMatch(lt: BtfEnum | BtfEnum64, tt: BtfEnum | BtfEnum64): boolean {
  if (lt.size !== tt.size || lt.values.length > tt.values.length) return false;
  return lt.values.every((lv) => tt.values.some((tv) => namesMatch(lv.name, tv.name)));
}

function compositesMatch(lb: Btf, lt: Composite, tb: Btf, tt: Composite, behindPtr: boolean, level: number): boolean {
  if (lt.members.length > tt.members.length) return false;
  return lt.members.every((lm) =>
    tt.members.some((tm) => namesMatch(lm.name, tm.name) && typesMatch(lb, lm.type, tb, tm.type, behindPtr, level - 1)),
  );
}

// ---- values ----

function computeField(kind: number, spec: Spec | undefined, local: boolean): Computed {
  if (kind === K.FIELD_EXISTS) return { poison: false, val: spec ? 1n : 0n, fieldSize: 0, typeId: 0, validate: true };
  if (!spec) return { poison: true };
  const btf = spec.btf;
  const acc = spec.acc[spec.acc.length - 1]!;
  if (acc.name === undefined) {
    // The spec ends in an array element (or the root itself).
    if (kind === K.FIELD_BYTE_OFFSET) {
      return { poison: false, val: BigInt(Math.floor(spec.bitOffset / 8)), fieldSize: resolveSize(btf, elementTypeId(btf, acc.typeId)), typeId: acc.typeId, validate: true };
    }
    if (kind === K.FIELD_BYTE_SIZE) {
      return { poison: false, val: BigInt(resolveSize(btf, acc.typeId)), fieldSize: 0, typeId: 0, validate: true };
    }
    throw new FatalRelocation(`${CORE_RELO_KIND_NAMES[kind]} cannot be applied to an array element`);
  }
  const holder = btf.type(acc.typeId) as Composite;
  const m = holder.members[acc.idx]!;
  const mt = btf.resolve(m.type);
  const fieldTypeId = mt.id;
  const bitOff = spec.bitOffset;
  let bitSize = m.bitfieldSize;
  const bitfield = bitSize > 0;
  let byteSize: number;
  let byteOff: number;
  if (bitfield) {
    const storage = (mt as { size?: number }).size;
    if (!storage) throw new FatalRelocation(`bitfield ${m.name} has a storage type without a size`);
    byteSize = storage;
    byteOff = Math.floor(Math.floor(bitOff / 8) / byteSize) * byteSize;
    // The smallest load (1, 2, 4 or 8 bytes, naturally aligned) that covers the bits.
    while (((bitOff + bitSize - byteOff * 8) >>> 0) > byteSize * 8) {
      if (byteSize >= 8) throw new FatalRelocation(`bitfield ${m.name} cannot be read with one 64-bit load`);
      byteSize *= 2;
      byteOff = Math.floor(Math.floor(bitOff / 8) / byteSize) * byteSize;
    }
  } else {
    byteSize = resolveSize(btf, fieldTypeId);
    byteOff = Math.floor(spec.bitOffset / 8);
    bitSize = (byteSize * 8) >>> 0;
  }
  // For bitfields the compiler's local choices (load size, offset) may legitimately differ from
  // ours, so only the sign and the right shift are checked against the instruction.
  let validate = !bitfield;
  let val: bigint;
  let fieldSize = 0;
  let typeId = 0;
  switch (kind) {
    case K.FIELD_BYTE_OFFSET:
      val = BigInt(byteOff);
      if (!bitfield) {
        // Loads of array members use the element size.
        fieldSize = resolveSize(btf, elementTypeId(btf, fieldTypeId));
        typeId = fieldTypeId;
      }
      break;
    case K.FIELD_BYTE_SIZE:
      val = BigInt(byteSize);
      break;
    case K.FIELD_SIGNED:
      val = (isAnyEnum(mt) && mt.signed) || (mt.kind === 'int' && mt.signed) ? 1n : 0n;
      validate = true;
      break;
    case K.FIELD_LSHIFT_U64:
      // Little-endian: shift the field's top bit up to bit 63.
      val = BigInt((64 - ((bitOff + bitSize - byteOff * 8) >>> 0)) >>> 0);
      break;
    case K.FIELD_RSHIFT_U64:
      val = BigInt((64 - bitSize) >>> 0);
      validate = true;
      break;
    default:
      throw new FatalRelocation(`unknown field relocation kind ${kind}`);
  }
  return { poison: false, val, fieldSize, typeId, validate: local ? validate : true };
}

/** The innermost element type of (possibly nested) arrays, or the type itself. */
function elementTypeId(btf: Btf, id: number): number {
  let t = btf.resolve(id);
  for (let i = 0; t.kind === 'array'; i++) {
    if (i > MAX_RESOLVE_DEPTH * 32) throw new FatalRelocation('array nesting too deep');
    t = btf.resolve(t.type);
  }
  return t.id;
}

function computeType(kind: number, spec: Spec | undefined): Computed {
  const done = (val: bigint, validate = true): Computed => ({ poison: false, val, fieldSize: 0, typeId: 0, validate });
  // A type that is not in the target gives 0 for every type relocation (no poisoning).
  if (!spec) return done(0n);
  switch (kind) {
    case K.TYPE_ID_TARGET:
      // The id embedded by the compiler may have changed when objects were linked: never checked.
      return done(BigInt(spec.rootId), false);
    case K.TYPE_EXISTS:
    case K.TYPE_MATCHES:
      return done(1n);
    case K.TYPE_SIZE:
      return done(BigInt(resolveSize(spec.btf, spec.rootId)));
    default:
      throw new FatalRelocation(`unknown type relocation kind ${kind}`);
  }
}

function computeEnumval(kind: number, spec: Spec | undefined): Computed {
  const done = (val: bigint): Computed => ({ poison: false, val, fieldSize: 0, typeId: 0, validate: true });
  if (kind === K.ENUMVAL_EXISTS) return done(spec ? 1n : 0n);
  if (kind !== K.ENUMVAL_VALUE) throw new FatalRelocation(`unknown enum relocation kind ${kind}`);
  if (!spec) return { poison: true };
  const t = spec.btf.type(spec.acc[0]!.typeId) as BtfEnum | BtfEnum64;
  const v = t.values[spec.acc[0]!.idx]!.value;
  // A 32-bit enumerator is stored as a signed 32-bit value and widened with its sign, whatever the
  // enum's own signedness (libbpf reads btf_enum.val, an s32); enum64 values are taken as 64 bits.
  return done(typeof v === 'bigint' ? BigInt.asUintN(64, v) : BigInt.asUintN(64, BigInt(v | 0)));
}

function computeOne(kind: number, spec: Spec | undefined, local: boolean): Computed {
  if (isFieldKind(kind)) return computeField(kind, spec, local);
  if (isTypeKind(kind)) return computeType(kind, spec);
  return computeEnumval(kind, spec);
}

/** Local and target values for one candidate (or for none, `target` undefined). */
function computeValues(kind: number, localSpec: Spec, target: Spec | undefined): RelocationValues {
  const orig = computeOne(kind, localSpec, true);
  if (orig.poison) throw new FatalRelocation('the local side of the relocation cannot be computed');
  const next = computeOne(kind, target, false);
  const out: RelocationValues = {
    orig: orig.val,
    next: next.poison ? 0n : next.val,
    poison: next.poison,
    validate: orig.validate,
    failMemSizeAdjust: false,
    origSize: orig.fieldSize,
    newSize: next.poison ? 0 : next.fieldSize,
    origTypeId: orig.typeId,
    newTypeId: next.poison ? 0 : next.typeId,
  };
  if (!next.poison && isFieldKind(kind) && out.origSize !== out.newSize) {
    // A load or store of a field whose size changed can be resized only when the value stays
    // the same: a pointer (32-bit kernels), or an unsigned integer (zero-extended either way).
    const ot = localSpec.btf.type(out.origTypeId);
    const nt = target!.btf.type(out.newTypeId);
    const safe =
      (ot.kind === 'ptr' && nt.kind === 'ptr') ||
      (ot.kind === 'int' && nt.kind === 'int' && intEncoding(ot) !== 1 && intEncoding(nt) !== 1);
    out.failMemSizeAdjust = !safe;
  }
  return out;
}

// ---- patching ----

function poison(insns: Buffer, idx: number, count: number): void {
  const write = (i: number): void => {
    const o = i * INSN_SIZE;
    insns[o] = OP_CALL;
    insns[o + 1] = 0;
    insns.writeInt16LE(0, o + 2);
    insns.writeInt32LE(CORE_POISON_IMM, o + 4);
  };
  // Both halves of an ld_imm64, so the verifier reports the call rather than a bad opcode.
  if (insns[idx * INSN_SIZE] === OP_LD_IMM64 && idx + 1 < count) write(idx + 1);
  write(idx);
}

/** Patches one instruction; returns whether it was poisoned and why. Throws FatalRelocation. */
function patchInstruction(insns: Buffer, idx: number, count: number, r: RelocationValues): { poisoned: boolean; reason?: string } {
  const o = idx * INSN_SIZE;
  const code = insns[o]!;
  const cls = code & 0x07;
  if (r.poison) {
    poison(insns, idx, count);
    return { poisoned: true };
  }
  switch (cls) {
    case CLASS_ALU:
    case CLASS_ALU64: {
      if (code & SRC_X) throw new FatalRelocation(`instruction ${idx} (ALU, register source) cannot carry a relocated value`);
      const imm = insns.readInt32LE(o + 4);
      if (r.validate && BigInt.asUintN(64, BigInt(imm)) !== r.orig) {
        throw new FatalRelocation(`instruction ${idx} (ALU) holds ${imm}, expected the local value ${r.orig} (to become ${r.next})`);
      }
      insns.writeInt32LE(Number(BigInt.asIntN(32, r.next)), o + 4);
      return { poisoned: false };
    }
    case CLASS_LDX:
    case CLASS_ST:
    case CLASS_STX: {
      const off = insns.readInt16LE(o + 2);
      if (r.validate && BigInt.asUintN(64, BigInt(off)) !== r.orig) {
        throw new FatalRelocation(`instruction ${idx} (LDX/ST/STX) has offset ${off}, expected the local value ${r.orig} (to become ${r.next})`);
      }
      if (r.next > BigInt(S16_MAX)) throw new FatalRelocation(`instruction ${idx} (LDX/ST/STX): offset ${r.next} does not fit in 16 bits`);
      if (r.failMemSizeAdjust) {
        poison(insns, idx, count);
        return {
          poisoned: true,
          reason: `instruction ${idx} (LDX/ST/STX) accesses a field whose size changed (${r.origSize} → ${r.newSize} bytes) and which is not a pointer or an unsigned integer`,
        };
      }
      if (r.newSize !== r.origSize) {
        const sizeBytes = BYTES_BY_SIZE[code & 0x18]!;
        if (sizeBytes !== r.origSize) {
          throw new FatalRelocation(`instruction ${idx} (LDX/ST/STX) accesses ${sizeBytes} bytes, expected the local field size ${r.origSize}`);
        }
        const newSizeCode = SIZE_BY_BYTES[r.newSize];
        if (newSizeCode === undefined) throw new FatalRelocation(`instruction ${idx} (LDX/ST/STX): the target field size ${r.newSize} cannot be loaded in one instruction`);
        insns[o] = (code & 0xe0) | newSizeCode | cls;
      }
      insns.writeInt16LE(Number(r.next), o + 2);
      return { poisoned: false };
    }
    case CLASS_LD: {
      const p = o + INSN_SIZE;
      if (
        code !== OP_LD_IMM64 ||
        idx + 1 >= count ||
        insns[o + 1]! >> 4 !== 0 ||
        insns.readInt16LE(o + 2) !== 0 ||
        insns[p] !== 0 ||
        insns[p + 1] !== 0 ||
        insns.readInt16LE(p + 2) !== 0
      ) {
        throw new FatalRelocation(`instruction ${idx} (LD) is not a plain 64-bit immediate load`);
      }
      const imm = (BigInt(insns.readUInt32LE(p + 4)) << 32n) | BigInt(insns.readUInt32LE(o + 4));
      if (r.validate && imm !== r.orig) {
        throw new FatalRelocation(`instruction ${idx} (LD_IMM64) holds ${imm}, expected the local value ${r.orig} (to become ${r.next})`);
      }
      insns.writeUInt32LE(Number(r.next & 0xffffffffn), o + 4);
      insns.writeUInt32LE(Number((r.next >> 32n) & 0xffffffffn), p + 4);
      return { poisoned: false };
    }
    default:
      throw new FatalRelocation(`instruction ${idx} (opcode 0x${code.toString(16)}) cannot be relocated`);
  }
}

// ---- descriptions ----

function kindWord(t: BtfType): string {
  switch (t.kind) {
    case 'struct':
    case 'union':
      return t.kind;
    case 'enum':
    case 'enum64':
      return 'enum';
    case 'fwd':
      return t.fwdKind;
    default:
      return t.kind;
  }
}

/** How C source names a type: "struct task_struct", "enum pid_type", "u32", "int". */
function typeLabel(t: BtfType): string {
  switch (t.kind) {
    case 'struct':
    case 'union':
    case 'enum':
    case 'enum64':
    case 'fwd':
      return `${kindWord(t)} ${t.name || '<anon>'}`;
    case 'void':
      return 'void';
    case 'array':
      return `array[${t.nelems}]`;
    default:
      return t.name || `<anon ${t.kind}>`;
  }
}

const TYPE_KIND_SUFFIX: Record<number, string> = {
  [K.TYPE_ID_LOCAL]: 'local type id',
  [K.TYPE_ID_TARGET]: 'target type id',
  [K.TYPE_EXISTS]: 'type exists',
  [K.TYPE_MATCHES]: 'type matches',
  [K.TYPE_SIZE]: 'type size',
};

function describeSpec(spec: Spec): string {
  const root = spec.btf.type(spec.rootId);
  const label = typeLabel(root);
  if (isTypeKind(spec.kind)) return `${label} (${TYPE_KIND_SUFFIX[spec.kind]})`;
  if (isEnumvalKind(spec.kind)) return `${label}::${spec.acc[0]!.name}`;
  let s = label;
  spec.acc.forEach((a, i) => {
    if (a.name !== undefined) s += `.${a.name}`;
    else if (i > 0 || a.idx > 0) s += `[${a.idx}]`;
  });
  return s;
}

/** Description when the access string could not be parsed. */
function rawDescription(btf: Btf, relo: CoreRelo): string {
  let label: string;
  try {
    label = typeLabel(btf.type(relo.typeId));
  } catch {
    label = `type ${relo.typeId}`;
  }
  return isTypeKind(relo.kind) ? `${label} (${TYPE_KIND_SUFFIX[relo.kind]})` : `${label} + ${relo.accessor}`;
}
