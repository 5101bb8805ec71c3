// Attach a loaded program where its section name says (`SEC("tp/...")` etc.).

import { BPF_PROG_TYPE, BPF_ATTACH_TYPE } from '../syscall/index.js';
import { NotSupportedError, TsbpfError } from '../errors.js';
import type { ProgramSpec } from '../elf/spec.js';
import type { Program } from '../programs/program.js';
import { attachRawTracepoint, attachTracepoint, attachTracing, type Link } from './link.js';

/** Why a program can't be auto-attached, or undefined when it can. */
export function autoAttachSupport(spec: ProgramSpec): string | undefined {
  switch (spec.type) {
    case BPF_PROG_TYPE.TRACEPOINT:
      return spec.attachTo.includes('/') ? undefined : `section "${spec.sectionKind}" names no tracepoint (want tp/<category>/<name>)`;
    case BPF_PROG_TYPE.RAW_TRACEPOINT:
    case BPF_PROG_TYPE.RAW_TRACEPOINT_WRITABLE:
      return spec.attachTo ? undefined : 'raw tracepoint section names no tracepoint (want raw_tp/<name>)';
    case BPF_PROG_TYPE.TRACING:
      if (spec.expectedAttachType === BPF_ATTACH_TYPE.TRACE_ITER) return 'iterators are read, not attached';
      return spec.attachTo ? undefined : 'tracing section names no target';
    case BPF_PROG_TYPE.LSM:
      return spec.attachTo ? undefined : 'lsm section names no hook';
    default:
      return `auto-attach of "${spec.sectionKind}" programs is not supported yet`;
  }
}

/** Attach `prog` according to its spec's section name. */
export function autoAttach(prog: Program, spec: ProgramSpec): Link {
  const why = autoAttachSupport(spec);
  if (why) throw new TsbpfError(`program "${spec.name}" (SEC "${spec.section}"): cannot auto-attach: ${why}`);
  switch (spec.type) {
    case BPF_PROG_TYPE.TRACEPOINT: {
      const i = spec.attachTo.indexOf('/');
      return attachTracepoint(prog, spec.attachTo.slice(0, i), spec.attachTo.slice(i + 1));
    }
    case BPF_PROG_TYPE.RAW_TRACEPOINT:
    case BPF_PROG_TYPE.RAW_TRACEPOINT_WRITABLE:
      return attachRawTracepoint(prog, spec.attachTo);
    case BPF_PROG_TYPE.TRACING:
    case BPF_PROG_TYPE.LSM:
      return attachTracing(prog, spec.attachTo, spec.sectionKind);
    default:
      throw new NotSupportedError(`auto-attach for ${spec.sectionKind}`);
  }
}
