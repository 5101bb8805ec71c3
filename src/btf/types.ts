// The BTF type model. Types refer to each other by type id (not by object
// reference) so that a large BTF (vmlinux: ~150k types) can be decoded lazily,
// one type at a time, and so that a spec can be marshalled back with its ids
// unchanged. Id 0 is always `void`.

export const BTF_KIND = {
  unknown: 0,
  int: 1,
  ptr: 2,
  array: 3,
  struct: 4,
  union: 5,
  enum: 6,
  fwd: 7,
  typedef: 8,
  volatile: 9,
  const: 10,
  restrict: 11,
  func: 12,
  func_proto: 13,
  var: 14,
  datasec: 15,
  float: 16,
  decl_tag: 17,
  type_tag: 18,
  enum64: 19,
} as const;

export type BtfKind = Exclude<keyof typeof BTF_KIND, 'unknown'> | 'void';

export interface BtfVoid {
  kind: 'void';
  id: 0;
  name: '';
}

export interface BtfInt {
  kind: 'int';
  id: number;
  name: string;
  /** Size in bytes. */
  size: number;
  signed: boolean;
  char: boolean;
  bool: boolean;
  /** BTF_INT_OFFSET: bit offset of the value inside the storage (almost always 0). */
  bitsOffset: number;
  /** BTF_INT_BITS: number of value bits. */
  bits: number;
}

/** ptr, typedef, volatile, const, restrict, type_tag: a name (maybe empty) and one referenced type. */
export interface BtfRef<K extends 'ptr' | 'typedef' | 'volatile' | 'const' | 'restrict' | 'type_tag'> {
  kind: K;
  id: number;
  name: string;
  type: number;
}
export type BtfPtr = BtfRef<'ptr'>;
export type BtfTypedef = BtfRef<'typedef'>;
export type BtfVolatile = BtfRef<'volatile'>;
export type BtfConst = BtfRef<'const'>;
export type BtfRestrict = BtfRef<'restrict'>;
/** A type tag; `attribute` is set when kind_flag is 1 (the tag is a C `__attribute__`, newer kernels). */
export interface BtfTypeTag extends BtfRef<'type_tag'> {
  attribute?: boolean;
}

export interface BtfArray {
  kind: 'array';
  id: number;
  name: string;
  type: number;
  indexType: number;
  nelems: number;
}

export interface BtfMember {
  name: string;
  type: number;
  /** Offset of the member from the start of the struct, in bits. */
  bitOffset: number;
  /** Bitfield width in bits; 0 when the member is not a bitfield. */
  bitfieldSize: number;
}

export interface BtfComposite<K extends 'struct' | 'union'> {
  kind: K;
  id: number;
  name: string;
  size: number;
  members: BtfMember[];
}
export type BtfStruct = BtfComposite<'struct'>;
export type BtfUnion = BtfComposite<'union'>;

export interface BtfEnumValue {
  name: string;
  value: number;
}

export interface BtfEnum {
  kind: 'enum';
  id: number;
  name: string;
  size: number;
  signed: boolean;
  values: BtfEnumValue[];
}

export interface BtfEnum64Value {
  name: string;
  value: bigint;
}

export interface BtfEnum64 {
  kind: 'enum64';
  id: number;
  name: string;
  size: number;
  signed: boolean;
  values: BtfEnum64Value[];
}

export interface BtfFwd {
  kind: 'fwd';
  id: number;
  name: string;
  fwdKind: 'struct' | 'union';
}

export type BtfLinkage = 'static' | 'global' | 'extern';

export interface BtfFunc {
  kind: 'func';
  id: number;
  name: string;
  /** Id of the FUNC_PROTO. */
  type: number;
  linkage: BtfLinkage;
}

export interface BtfParam {
  name: string;
  type: number;
}

export interface BtfFuncProto {
  kind: 'func_proto';
  id: number;
  name: string;
  returnType: number;
  params: BtfParam[];
}

export interface BtfVar {
  kind: 'var';
  id: number;
  name: string;
  type: number;
  linkage: BtfLinkage;
}

export interface BtfVarSecinfo {
  /** Id of the VAR (or FUNC, for .ksyms) in this section. */
  type: number;
  /** Byte offset inside the section. */
  offset: number;
  /** Size in bytes. */
  size: number;
}

export interface BtfDatasec {
  kind: 'datasec';
  id: number;
  name: string;
  size: number;
  vars: BtfVarSecinfo[];
}

export interface BtfFloat {
  kind: 'float';
  id: number;
  name: string;
  size: number;
}

export interface BtfDeclTag {
  kind: 'decl_tag';
  id: number;
  name: string;
  type: number;
  /** -1 when the tag applies to the type itself, else the member/param index. */
  componentIdx: number;
  /** Set when kind_flag is 1: the tag is a C `__attribute__` rather than a btf_decl_tag (newer kernels). */
  attribute?: boolean;
}

export type BtfType =
  | BtfVoid
  | BtfInt
  | BtfPtr
  | BtfArray
  | BtfStruct
  | BtfUnion
  | BtfEnum
  | BtfFwd
  | BtfTypedef
  | BtfVolatile
  | BtfConst
  | BtfRestrict
  | BtfFunc
  | BtfFuncProto
  | BtfVar
  | BtfDatasec
  | BtfFloat
  | BtfDeclTag
  | BtfTypeTag
  | BtfEnum64;

/**
 * A type without its id, as passed to `Btf.addType()` (which assigns the id). Distributes over the
 * union, so an object literal is checked against the fields of its own kind.
 */
export type BtfTypeInit = Exclude<BtfType, BtfVoid> extends infer T ? (T extends BtfType ? Omit<T, 'id'> : never) : never;

/** One `bpf_func_info` record of a program, with the instruction offset in instructions (not bytes). */
export interface FuncInfo {
  insnOff: number;
  typeId: number;
}

/** One `bpf_line_info` record, with strings resolved and the offset in instructions. */
export interface LineInfo {
  insnOff: number;
  fileName: string;
  lineText: string;
  line: number;
  column: number;
}

/** BPF_CORE_* relocation kinds (enum bpf_core_relo_kind). */
export const CORE_RELO_KIND = {
  FIELD_BYTE_OFFSET: 0,
  FIELD_BYTE_SIZE: 1,
  FIELD_EXISTS: 2,
  FIELD_SIGNED: 3,
  FIELD_LSHIFT_U64: 4,
  FIELD_RSHIFT_U64: 5,
  TYPE_ID_LOCAL: 6,
  TYPE_ID_TARGET: 7,
  TYPE_EXISTS: 8,
  TYPE_SIZE: 9,
  ENUMVAL_EXISTS: 10,
  ENUMVAL_VALUE: 11,
  TYPE_MATCHES: 12,
} as const;

/** One `bpf_core_relo` record, offset in instructions, access string resolved. */
export interface CoreRelo {
  insnOff: number;
  typeId: number;
  /** Access string, e.g. "0:1:2". */
  accessor: string;
  kind: number;
}

/** Per-section program metadata from .BTF.ext. Keys are ELF section names. */
export interface BtfExt {
  funcInfos: Map<string, FuncInfo[]>;
  lineInfos: Map<string, LineInfo[]>;
  coreRelos: Map<string, CoreRelo[]>;
}
