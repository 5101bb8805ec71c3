// Specs: the plain, deterministic description of a BPF object, produced by
// parsing an ELF file. Nothing here touches the kernel. `new Collection(spec)`
// turns specs into kernel objects.

import type { Btf } from '../btf/btf.js';
import type { CoreRelo, FuncInfo, LineInfo } from '../btf/types.js';

/**
 * A reference from one instruction to something resolved at load time.
 * `insn` is the index (in instructions, not bytes) inside the function that holds it.
 */
export type InsnReloc =
  /** ld_imm64 of a map (BTF `.maps` or legacy `maps`): becomes BPF_PSEUDO_MAP_FD / BPF_PSEUDO_MAP_IDX. */
  | { kind: 'map'; insn: number; map: string }
  /**
   * ld_imm64 of an address inside a global data map (.data, .bss, .rodata, ...): becomes
   * BPF_PSEUDO_MAP_VALUE with `offset` (bytes into the map value; symbol value + addend already added).
   */
  | { kind: 'mapValue'; insn: number; map: string; offset: number }
  /** bpf-to-bpf call (BPF_PSEUDO_CALL): `target` is a key of `CollectionSpec.functions`. */
  | { kind: 'call'; insn: number; target: string }
  /** ld_imm64 of a function's address, e.g. a `bpf_loop` callback (BPF_PSEUDO_FUNC). */
  | { kind: 'func'; insn: number; target: string }
  /** Reference to an extern (`.kconfig` / `.ksyms` variable or kfunc call); resolved by the CO-RE/extern issue. */
  | { kind: 'extern'; insn: number; name: string; offset: number; weak: boolean };

/** One function (a program's entry or a subprogram) with its instructions and metadata. */
export interface FunctionSpec {
  /** Symbol name. */
  name: string;
  /** Unique key in `CollectionSpec.functions`: `"<section>/<name>"`, or `"<section>/<name>@<insn>"` when a
   * statically linked object has two static functions of that name in the section. */
  key: string;
  /** ELF section that holds it. */
  section: string;
  /** Index (in instructions) of the first instruction inside the section. */
  sectionOffset: number;
  /** Raw little-endian instructions, 8 bytes each. Never shared with another spec. */
  instructions: Buffer;
  /** References to resolve, sorted by `insn`. */
  relocations: InsnReloc[];
  /** From .BTF.ext, offsets relative to this function (in instructions). */
  funcInfos: FuncInfo[];
  lineInfos: LineInfo[];
  coreRelos: CoreRelo[];
  /** true for STB_GLOBAL functions (the kernel verifies global subprograms on their own). */
  global: boolean;
}

/** A program: a function in an executable section other than `.text`. */
export interface ProgramSpec extends FunctionSpec {
  /** BPF_PROG_TYPE_* number (see `ProgramType`). 0 (UNSPEC) when the section name is unknown. */
  type: number;
  /** BPF attach type number expected at load (`expected_attach_type`), 0 when not needed. */
  expectedAttachType: number;
  /**
   * What the section name says to attach to, e.g. `"syscalls/sys_enter_getpid"` for
   * `tp/syscalls/sys_enter_getpid`, `"sched_switch"` for `tp_btf/sched_switch`. Empty when none.
   */
  attachTo: string;
  /** The part of the section name before the first `/` with `?` and `.s` removed, e.g. `"tp"`, `"tp_btf"`. */
  sectionKind: string;
  /** BPF_F_* program load flags (BPF_F_SLEEPABLE for `.s` sections, BPF_F_XDP_HAS_FRAGS for `.frags`). */
  flags: number;
  /** false for `SEC("?...")` programs: not loaded unless asked. */
  autoload: boolean;
  license: string;
  kernelVersion: number;
}

export type PinType = 'none' | 'byName';

/** An initial entry of a map: key and value as raw bytes, or a reference by name to a program or map. */
export interface MapEntrySpec {
  key: Buffer;
  value: Buffer | { program: string } | { map: string };
}

export interface MapSpec {
  /** Name in the object (BTF variable name, legacy symbol, or section name like ".bss"). */
  name: string;
  /** Name given to the kernel (at most 15 characters, `[A-Za-z0-9_.]`). */
  kernelName: string;
  /** BPF_MAP_TYPE_* number (see `MapType`). */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* map flags. */
  flags: number;
  numaNode?: number;
  mapExtra?: bigint;
  pinning: PinType;
  /** BTF type ids (in the object's BTF) of key and value, when the object declares them. */
  keyType?: number;
  valueType?: number;
  /** Template of the inner map for ARRAY_OF_MAPS / HASH_OF_MAPS. */
  innerMap?: MapSpec;
  /** Initial entries (global data: one entry with key 0; `.values` of prog arrays and map-in-maps). */
  contents: MapEntrySpec[];
  /** `.rodata*`: frozen after its contents are written (BPF_MAP_FREEZE). */
  freeze: boolean;
  /** Where the spec came from. */
  origin: 'btf' | 'legacy' | 'data';
  /** ELF section name (`.maps`, `maps`, `.bss`, ...). */
  section: string;
}

/** A global variable living in a data map (`.data`, `.bss`, `.rodata`, ...). */
export interface VariableSpec {
  name: string;
  /** Key of `CollectionSpec.maps` holding it. */
  map: string;
  /** Byte offset inside the map value. */
  offset: number;
  size: number;
  /** BTF type id of the variable's type (in the object's BTF), 0 when the object has no BTF. */
  type: number;
  /** true for `.rodata*` (constant to the program, settable before load only). */
  readonly: boolean;
  global: boolean;
}

export interface CollectionSpec {
  /** Programs by function name, in section then offset order. */
  programs: Record<string, ProgramSpec>;
  /** Maps by name, in section then offset order (global data maps included). */
  maps: Record<string, MapSpec>;
  /** Global variables by name. */
  variables: Record<string, VariableSpec>;
  /** Every function of the object (programs and subprograms) by `FunctionSpec.key`. */
  functions: Record<string, FunctionSpec>;
  /** The object's BTF, when it has a `.BTF` section. */
  btf?: Btf;
  license: string;
  kernelVersion: number;
  /** Basename of the object without `.o`, used for kernel map names of global data like libbpf. */
  objectName: string;
}
