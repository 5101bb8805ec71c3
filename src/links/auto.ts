// Attach a loaded program where its section name says (`SEC("tp/...")`, `SEC("uprobe/...")`, ...), like
// libbpf's bpf_program__attach(). Each family of hooks has its own module answering two questions:
// "can you attach this spec (and if not, why)?" — undefined: yes, a string: why not, null: not mine — and
// "attach it". This module asks them in turn, and handles the tracepoint and BTF-typed kinds itself.

import { BPF_PROG_TYPE, BPF_ATTACH_TYPE } from '../syscall/index.js';
import { NotSupportedError, TsbpfError } from '../errors.js';
import type { ProgramSpec } from '../elf/spec.js';
import type { Program } from '../programs/program.js';
import { attachRawTracepoint, attachTracepoint, attachTracing, type Link } from './link.js';
import { autoAttachTracing, autoAttachTracingSupport, type AutoAttachTracingOptions } from './auto-tracing.js';
import { autoAttachUprobe, autoAttachUprobeSupport, type AutoAttachUprobeOptions } from './auto-uprobe.js';
import { autoAttachCgroup, autoAttachCgroupSupport, type AutoAttachCgroupOptions } from './auto-cgroup.js';
import { autoAttachNet, autoAttachNetSupport, type AutoAttachNetOptions } from './auto-net.js';

/** What the section name cannot say: where networking and cgroup programs go, options of sampling events, ... */
export type AutoAttachOptions = AutoAttachTracingOptions & AutoAttachUprobeOptions & AutoAttachCgroupOptions & AutoAttachNetOptions;

interface Family {
  support(spec: ProgramSpec, opts: AutoAttachOptions): string | undefined | null;
  attach(prog: Program, spec: ProgramSpec, opts: AutoAttachOptions): Link | Link[] | undefined;
}

const FAMILIES: Family[] = [
  { support: autoAttachTracingSupport, attach: autoAttachTracing },
  { support: (s) => autoAttachUprobeSupport(s), attach: autoAttachUprobe },
  { support: autoAttachCgroupSupport, attach: autoAttachCgroup },
  { support: autoAttachNetSupport, attach: autoAttachNet },
];

/** The tracepoint and BTF-typed kinds handled here. */
function basicSupport(spec: ProgramSpec): string | undefined | null {
  switch (spec.type) {
    case BPF_PROG_TYPE.TRACEPOINT:
      return spec.attachTo.includes('/') ? undefined : `section "${spec.sectionKind}" names no tracepoint (want tp/<category>/<name>)`;
    case BPF_PROG_TYPE.RAW_TRACEPOINT:
    case BPF_PROG_TYPE.RAW_TRACEPOINT_WRITABLE:
      return spec.attachTo ? undefined : 'raw tracepoint section names no tracepoint (want raw_tp/<name>)';
    case BPF_PROG_TYPE.TRACING:
      if (spec.expectedAttachType === BPF_ATTACH_TYPE.TRACE_ITER) return null;
      return spec.attachTo ? undefined : 'tracing section names no target';
    case BPF_PROG_TYPE.LSM:
      return spec.attachTo ? undefined : 'lsm section names no hook';
    default:
      return null;
  }
}

/** Why a program can't be auto-attached (with these options), or undefined when it can. */
export function autoAttachSupport(spec: ProgramSpec, opts: AutoAttachOptions = {}): string | undefined {
  for (const f of FAMILIES) {
    const r = f.support(spec, opts);
    if (r !== null) return r;
  }
  const r = basicSupport(spec);
  if (r !== null) return r;
  return `auto-attach of "${spec.sectionKind}" programs is not supported`;
}

/**
 * Attach `prog` according to its spec's section name. Most hooks give one Link; some give several (USDT
 * with several sites, perf_event on every CPU). Throws a TsbpfError saying why when it cannot.
 */
export function autoAttach(prog: Program, spec: ProgramSpec, opts: AutoAttachOptions = {}): Link | Link[] {
  for (const f of FAMILIES) {
    const why = f.support(spec, opts);
    if (why === null) continue;
    if (why !== undefined) throw new TsbpfError(`program "${spec.name}" (SEC "${spec.section}"): cannot auto-attach: ${why}`);
    const l = f.attach(prog, spec, opts);
    if (l === undefined) break;
    return l;
  }
  const why = basicSupport(spec);
  if (why === null) throw new NotSupportedError(`auto-attach for ${spec.sectionKind}`);
  if (why !== undefined) throw new TsbpfError(`program "${spec.name}" (SEC "${spec.section}"): cannot auto-attach: ${why}`);
  switch (spec.type) {
    case BPF_PROG_TYPE.TRACEPOINT: {
      const i = spec.attachTo.indexOf('/');
      return attachTracepoint(prog, spec.attachTo.slice(0, i), spec.attachTo.slice(i + 1));
    }
    case BPF_PROG_TYPE.RAW_TRACEPOINT:
    case BPF_PROG_TYPE.RAW_TRACEPOINT_WRITABLE:
      return attachRawTracepoint(prog, spec.attachTo);
    default:
      return attachTracing(prog, spec.attachTo, spec.sectionKind);
  }
}
