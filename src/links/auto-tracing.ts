// Auto-attach of the tracing sections auto.ts leaves out: kprobe/kretprobe, kprobe.multi/kretprobe.multi,
// ksyscall/kretsyscall, iter/*, perf_event (which needs options), freplace (target fixed at load).

import { BPF_ATTACH_TYPE, BPF_PROG_TYPE, rawTracepointOpen } from '../syscall/index.js';
import { TsbpfError } from '../errors.js';
import type { ProgramSpec } from '../elf/spec.js';
import { functionBtfId, type Program } from '../programs/program.js';
import { linkCreate } from '../syscall/index.js';
import { Link } from './link.js';
import { attachIter, type IterLink, type IterOptions } from './iter.js';
import { attachKprobe, attachKprobeMulti, attachKsyscall, kprobeSupport } from './kprobe.js';
import { attachPerfEvent, type PerfEventOptions } from './perf-event.js';

export interface AutoAttachTracingOptions {
  /** iter/*: the map, cgroup or task to walk. */
  iter?: IterOptions;
  /** perf_event: the sampling event (there is no default: the section does not say). */
  perfEvent?: PerfEventOptions;
  /** kprobe/kretprobe/ksyscall: bpf_get_attach_cookie() value. */
  cookie?: bigint;
}

/** Iterator targets that walk something the caller must name. */
const ITER_NEEDS: Record<string, string> = {
  bpf_map_elem: 'map',
  bpf_sk_storage_map: 'map',
  sockmap: 'map',
  cgroup: 'cgroup',
};

type Kind = 'kprobe' | 'kprobe.multi' | 'ksyscall' | 'iter' | 'perf_event' | 'freplace';

function kindOf(spec: ProgramSpec): { kind: Kind; retprobe: boolean } | undefined {
  if (spec.type === BPF_PROG_TYPE.KPROBE) {
    switch (spec.sectionKind) {
      case 'kprobe':
        return { kind: 'kprobe', retprobe: false };
      case 'kretprobe':
        return { kind: 'kprobe', retprobe: true };
      case 'kprobe.multi':
        return { kind: 'kprobe.multi', retprobe: false };
      case 'kretprobe.multi':
        return { kind: 'kprobe.multi', retprobe: true };
      case 'ksyscall':
        return { kind: 'ksyscall', retprobe: false };
      case 'kretsyscall':
        return { kind: 'ksyscall', retprobe: true };
      default:
        return undefined;
    }
  }
  if (spec.type === BPF_PROG_TYPE.TRACING && spec.expectedAttachType === BPF_ATTACH_TYPE.TRACE_ITER) return { kind: 'iter', retprobe: false };
  if (spec.type === BPF_PROG_TYPE.PERF_EVENT) return { kind: 'perf_event', retprobe: false };
  if (spec.type === BPF_PROG_TYPE.EXT) return { kind: 'freplace', retprobe: false };
  return undefined;
}

/**
 * For the sections this module handles: undefined when `autoAttachTracing` can attach the program,
 * a string saying why not; null for sections it does not handle.
 */
export function autoAttachTracingSupport(spec: ProgramSpec, opts: AutoAttachTracingOptions = {}): string | undefined | null {
  const k = kindOf(spec);
  if (!k) return null;
  const sec = `section "${spec.section}"`;
  switch (k.kind) {
    case 'kprobe':
      if (!spec.attachTo) return `${sec} names no kernel function (want ${spec.sectionKind}/<function>[+offset])`;
      return kprobeSupport();
    case 'ksyscall':
      if (!spec.attachTo) return `${sec} names no syscall (want ${spec.sectionKind}/<syscall>)`;
      return kprobeSupport();
    case 'kprobe.multi':
      if (!spec.attachTo) return `${sec} names no functions (want ${spec.sectionKind}/<glob>)`;
      return undefined;
    case 'iter': {
      const need = ITER_NEEDS[spec.attachTo];
      if (need && !opts.iter?.[need as keyof IterOptions]) return `iterator over ${spec.attachTo} needs a ${need}: attachIter(prog, { ${need} })`;
      return undefined;
    }
    case 'perf_event':
      return opts.perfEvent ? undefined : 'perf_event programs need a sampling event: attachPerfEvent(prog, { cpu, type, config, sampleFreq })';
    case 'freplace':
      return spec.attachTo ? undefined : `${sec} names no function to replace (want freplace/<function>)`;
  }
}

/**
 * Attach `prog` as its section says, for kprobe/kretprobe, kprobe.multi/kretprobe.multi,
 * ksyscall/kretsyscall, iter/* (the link is created; read it with `IterLink.read()`), perf_event
 * (with `opts.perfEvent`) and freplace (to the target given at load). Returns undefined for other sections.
 */
export function autoAttachTracing(prog: Program, spec: ProgramSpec, opts: AutoAttachTracingOptions = {}): Link | Link[] | undefined {
  const k = kindOf(spec);
  if (!k) return undefined;
  const why = autoAttachTracingSupport(spec, opts);
  if (why) throw new TsbpfError(`program "${spec.name}" (SEC "${spec.section}"): cannot auto-attach: ${why}`);
  switch (k.kind) {
    case 'kprobe':
      return attachKprobe(prog, { symbol: spec.attachTo, retprobe: k.retprobe, cookie: opts.cookie });
    case 'ksyscall':
      return attachKsyscall(prog, spec.attachTo, { retprobe: k.retprobe, cookie: opts.cookie });
    case 'kprobe.multi':
      return attachKprobeMulti(prog, { symbols: spec.attachTo, retprobe: k.retprobe });
    case 'iter':
      return attachIter(prog, opts.iter) as IterLink;
    case 'perf_event':
      return attachPerfEvent(prog, opts.perfEvent!);
    case 'freplace':
      return attachFreplace(prog);
  }
}

/**
 * Attach a freplace program. Without `target` it replaces the function named at load
 * (`attachTargets`); with one, it replaces `target.function` of `target.program` (which must have the
 * same signature: the kernel checks).
 */
export function attachFreplace(prog: Program, target?: { program: Program; function: string }): Link {
  if (!target) {
    const fd = rawTracepointOpen(prog.fd, null, `attach freplace "${prog.name}"`);
    return new Link('freplace', 'load-time target', prog.name, { fd });
  }
  const fd = linkCreate(
    { progFd: prog.fd, targetFd: target.program.fd, targetBtfId: functionBtfId(target.program, target.function), attachType: 0 },
    `attach freplace "${prog.name}" to ${target.program.name}:${target.function}`,
  );
  return new Link('freplace', `${target.program.name}:${target.function}`, prog.name, { fd });
}
