// tsbpf public API.
export { TsbpfError, ElfError, BtfError, BtfNotFoundError, NotSupportedError, ClosedError } from './errors.js';
export { BpfError, SyscallError, FD, ownedFdCount, BPF_MAP_TYPE, BPF_PROG_TYPE, BPF_ATTACH_TYPE } from './syscall/index.js';
export { Btf } from './btf/btf.js';
export { loadKernelBtf, loadBtfFile } from './btf/kernel.js';
export { applyCoreRelocations, type CoreResult } from './btf/core.js';
export { Codec, codecFor, type DecodeOptions } from './btf/codec.js';
export { Externs, ExternError } from './collection/externs.js';
export type * from './btf/types.js';
export { loadCollectionSpec } from './elf/index.js';
export { getVariable, setVariable } from './elf/variables.js';
export type { CollectionSpec, ProgramSpec, MapSpec, VariableSpec, FunctionSpec, InsnReloc, MapEntrySpec } from './elf/spec.js';
export { BpfMap, BpfMap as Map, MapType, UpdateFlags, mapTypeName, loadPinnedMap, type MapInfo, type KeyLike } from './maps/map.js';
export { unpin, checkBpffsPath } from './maps/pin.js';
export { Program, ProgramType, VerifierError, programTypeName, type ProgramInfo, type RunOptions } from './programs/program.js';
export { Link, attachTracepoint, attachRawTracepoint, attachTracing } from './links/link.js';
export { autoAttach, autoAttachSupport } from './links/auto.js';
export { Collection, CollectionError, type CollectionOptions } from './collection/collection.js';
export { GlobalVariable } from './collection/globals.js';
