// Public surface of the BTF layer.
export * from './types.js';
export { Btf, type BtfParseOptions } from './btf.js';
export { parseBtfExt, marshalFuncInfos, marshalLineInfos } from './ext.js';
export {
  loadKernelBtf,
  loadKernelModuleBtf,
  loadBtfFile,
  KernelBtfUnavailableError,
  KERNEL_BTF_DIR,
  VMLINUX_BTF_PATH,
} from './kernel.js';
export { applyCoreRelocations, CoreCandidateCache, CORE_POISON_IMM, CORE_RELO_KIND_NAMES, essentialName, type CoreResult, type CoreOptions } from './core.js';
export { Codec, codecFor, type DecodeOptions } from './codec.js';
export { cTypeName, type TypeNameOptions } from './names.js';
export { dumpBtfAsC, dumpBtfAsJson, type DumpCOptions, type DumpJsonOptions, type BtfJson, type BtfJsonType } from './cdump.js';
