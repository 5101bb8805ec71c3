// Error classes shared by every layer. This module imports nothing, so the
// lowest layer (syscall) and the highest (cli) can both depend on it.

/** Base class of every error tsbpf throws on purpose. */
export class TsbpfError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A malformed or unsupported ELF object. */
export class ElfError extends TsbpfError {
  /** Section or symbol the problem was found in, when known. */
  readonly section?: string;
  constructor(message: string, options?: { section?: string; cause?: unknown }) {
    super(message, options);
    this.section = options?.section;
  }
}

/** Malformed BTF or BTF.ext data, or a failed type lookup. */
export class BtfError extends TsbpfError {}

/** A type lookup in BTF found nothing. */
export class BtfNotFoundError extends BtfError {}

/** The running kernel lacks a feature. `minimumKernel` says which version brought it. */
export class NotSupportedError extends TsbpfError {
  readonly feature: string;
  readonly minimumKernel?: string;
  constructor(feature: string, minimumKernel?: string, detail?: string) {
    super(
      `kernel lacks ${feature}` +
        (minimumKernel ? ` (needs ${minimumKernel})` : '') +
        (detail ? `: ${detail}` : ''),
    );
    this.feature = feature;
    this.minimumKernel = minimumKernel;
  }
}

/** An operation on an object whose `close()` was already called. */
export class ClosedError extends TsbpfError {}

/** What a wrong argument is, for an error message: `null`, `an Array`, its class name, or its typeof. */
export function describeArgument(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an Array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}
