// Kernel feature probes for tests of hooks a kernel may lack. Each probe really tries the feature (loads
// and attaches a tiny program, opens the event) and caches the outcome, so a test skips only when the
// kernel refuses it, and says why:
//   t.test('...', { skip: skipReason('kprobes') }, ...)
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import {
  Program, attachKprobe, attachKprobeMulti, ksyscallName, kprobeSupport, loadKernelBtf, BPF_PROG_TYPE, BPF_ATTACH_TYPE,
} from '../../src/index.js';
import { SyscallError, mount, rawTracepointOpen } from '../../src/syscall/index.js';

export type Feature = 'kprobes' | 'kprobeMulti' | 'trampolines' | 'bpfLsm';

/** r0 = 0; exit */
const RET0 = Buffer.from('b700000000000000' + '9500000000000000', 'hex');

const cache = new Map<Feature, string | false>();

function errText(e: unknown): string {
  if (e instanceof SyscallError) return e.errno;
  const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
  return /\b(E[A-Z0-9]{2,})\b/.exec(msg)?.[1] ?? msg;
}

function tinyKprobe(expectedAttachType = 0): Program {
  return Program.load({ name: 'probe_kprobe', type: BPF_PROG_TYPE.KPROBE, insns: RET0, license: 'GPL', expectedAttachType });
}

function probeKprobes(): string | false {
  const why = kprobeSupport();
  if (why) return why;
  // The interface exists: attach for real to the getpid syscall's function.
  try {
    using prog = tinyKprobe();
    using _link = attachKprobe(prog, { symbol: ksyscallName('getpid') });
    return false;
  } catch (e) {
    return `this kernel refuses kprobes: ${errText(e)}`;
  }
}

function probeKprobeMulti(): string | false {
  let prog: Program;
  try {
    prog = tinyKprobe(BPF_ATTACH_TYPE.TRACE_KPROBE_MULTI);
  } catch (e) {
    return `this kernel refuses kprobe.multi programs: ${errText(e)}`;
  }
  try {
    using _link = attachKprobeMulti(prog, { symbols: [ksyscallName('getpid')] });
    return false;
  } catch (e) {
    return `this kernel refuses kprobe.multi links: ${errText(e)} (they need 5.18+ with CONFIG_FPROBE)`;
  } finally {
    prog.close();
  }
}

function probeTrampolines(): string | false {
  const target = loadKernelBtf().tryFindType('bpf_fentry_test1', 'func');
  if (!target) return 'kernel BTF has no bpf_fentry_test1 to probe trampolines with';
  let prog: Program;
  try {
    prog = Program.load({
      name: 'probe_fentry', type: BPF_PROG_TYPE.TRACING, expectedAttachType: BPF_ATTACH_TYPE.TRACE_FENTRY,
      attachBtfId: target.id, insns: RET0, license: 'GPL',
    });
  } catch (e) {
    return `this kernel refuses trampoline programs: ${errText(e)}`;
  }
  try {
    rawTracepointOpen(prog.fd, null).close();
    return false;
  } catch (e) {
    return `this kernel cannot attach trampoline programs: ${errText(e)}`;
  } finally {
    prog.close();
  }
}

/** Active LSMs, from securityfs (mounted if needed). */
function activeLsms(): string[] | undefined {
  const file = '/sys/kernel/security/lsm';
  try {
    if (!existsSync(file) && existsSync('/sys/kernel/security')) mount('securityfs', '/sys/kernel/security', 'securityfs');
    return readFileSync(file, 'utf8').trim().split(',');
  } catch {
    return undefined;
  }
}

function probeBpfLsm(): string | false {
  const tramp = skipReason('trampolines');
  if (tramp) return tramp;
  const lsms = activeLsms();
  if (!lsms) return 'cannot read the active LSMs (/sys/kernel/security/lsm): is securityfs available?';
  if (!lsms.includes('bpf')) return `the BPF LSM is not active (active: ${lsms.join(',')}; boot with lsm=...,bpf)`;
  const hook = loadKernelBtf().tryFindType('bpf_lsm_socket_create', 'func');
  if (!hook) return 'kernel BTF has no bpf_lsm_socket_create (CONFIG_BPF_LSM off)';
  try {
    using prog = Program.load({
      name: 'probe_lsm', type: BPF_PROG_TYPE.LSM, expectedAttachType: BPF_ATTACH_TYPE.LSM_MAC,
      attachBtfId: hook.id, insns: RET0, license: 'GPL',
    });
    rawTracepointOpen(prog.fd, null).close();
    return false;
  } catch (e) {
    return `this kernel refuses BPF LSM programs: ${errText(e)}`;
  }
}

const PROBES: Record<Feature, () => string | false> = {
  kprobes: probeKprobes,
  kprobeMulti: probeKprobeMulti,
  trampolines: probeTrampolines,
  bpfLsm: probeBpfLsm,
};

/** Why the kernel lacks `feature` (a tap skip message), or false when it has it. Probed once. */
export function skipReason(feature: Feature): string | false {
  let r = cache.get(feature);
  if (r === undefined) {
    r = PROBES[feature]();
    cache.set(feature, r);
  }
  return r;
}

/** Every missing feature among `features`, joined, or false. */
export function skipUnless(...features: Feature[]): string | false {
  const why = features.map(skipReason).filter((x): x is string => typeof x === 'string');
  return why.length ? why.join('; ') : false;
}

/** The running kernel's version as [major, minor]. */
export function kernelVersion(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(release());
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * A skip reason when the running kernel is older than `major.minor`, which added `what`; false otherwise.
 * Self-validating: on a kernel that should have the feature the test runs, and fails if it is missing.
 */
export function needsKernel(major: number, minor: number, what: string): string | false {
  const [a, b] = kernelVersion();
  if (a > major || (a === major && b >= minor)) return false;
  return `${what} needs Linux ${major}.${minor}+, this is ${release()}`;
}
