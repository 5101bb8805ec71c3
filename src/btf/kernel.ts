// BTF of the running kernel (/sys/kernel/btf/vmlinux and its modules), and BTF from files.

import { readFileSync } from 'node:fs';
import { BtfError, BtfNotFoundError, NotSupportedError } from '../errors.js';
import { Btf } from './btf.js';
import { findElfSection, isElf } from './elf-section.js';

export const KERNEL_BTF_DIR = '/sys/kernel/btf';
export const VMLINUX_BTF_PATH = `${KERNEL_BTF_DIR}/vmlinux`;

/** The kernel exposes no BTF: it was built without CONFIG_DEBUG_INFO_BTF (or is older than 5.4). */
export class KernelBtfUnavailableError extends NotSupportedError {
  constructor(options?: { cause?: unknown }) {
    super('BTF at ' + VMLINUX_BTF_PATH, '5.4');
    this.message = `kernel has no BTF at ${VMLINUX_BTF_PATH} (needs CONFIG_DEBUG_INFO_BTF)`;
    if (options?.cause !== undefined) this.cause = options.cause;
    // The stack was captured with the generic message: take it again with this one.
    Error.captureStackTrace(this, KernelBtfUnavailableError);
  }
}

let vmlinux: Btf | undefined;
const modules = new Map<string, Btf>();

function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : undefined;
}

/**
 * The running kernel's BTF, parsed once per process (lazily: types are decoded when looked up).
 * Throws KernelBtfUnavailableError (a NotSupportedError) when the kernel has none.
 */
export function loadKernelBtf(): Btf {
  if (vmlinux) return vmlinux;
  let data: Buffer;
  try {
    data = readFileSync(VMLINUX_BTF_PATH);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') throw new KernelBtfUnavailableError({ cause: e });
    throw new BtfError(`cannot read ${VMLINUX_BTF_PATH}: ${(e as Error).message}`, { cause: e });
  }
  vmlinux = Btf.parse(data);
  return vmlinux;
}

/**
 * BTF of a loaded kernel module (`/sys/kernel/btf/<name>`), split BTF on top of vmlinux; cached.
 * Throws BtfNotFoundError when the module is not loaded or has no BTF.
 */
export function loadKernelModuleBtf(name: string): Btf {
  if (name === 'vmlinux') return loadKernelBtf();
  if (name === '' || name.includes('/') || name === '.' || name === '..') {
    throw new BtfError(`invalid kernel module name ${JSON.stringify(name)}`);
  }
  const cached = modules.get(name);
  if (cached) return cached;
  const base = loadKernelBtf();
  const path = `${KERNEL_BTF_DIR}/${name}`;
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') {
      throw new BtfNotFoundError(
        `kernel module ${name} has no BTF at ${path} (not loaded, or kernel built without CONFIG_DEBUG_INFO_BTF_MODULES)`,
        { cause: e },
      );
    }
    throw new BtfError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  const btf = Btf.parse(data, { base });
  modules.set(name, btf);
  return btf;
}

/**
 * BTF from a file: raw BTF (e.g. a copy of /sys/kernel/btf/vmlinux) or an ELF object with a `.BTF`
 * section (a clang -g object, a vmlinux image). Pass `base` for split BTF.
 */
export function loadBtfFile(path: string, options: { base?: Btf } = {}): Btf {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    throw new BtfError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (isElf(data)) {
    const section = findElfSection(data, '.BTF');
    if (!section) throw new BtfNotFoundError(`${path} has no .BTF section (compile with -g)`);
    return Btf.parse(section, options);
  }
  return Btf.parse(data, options);
}
