// Typed errors for failed system calls, with a hint that says what to do.

import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { TsbpfError } from '../errors.js';

const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
}

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

export const E = constants.errno;

/** Hints keyed by errno, refined by command where the meaning differs. */
function hint(syscall: string, cmd: string | undefined, errno: number): string {
  switch (errno) {
    case E.EPERM:
      if (syscall === 'perf_event_open') {
        return 'needs CAP_PERFMON (or CAP_SYS_ADMIN) or root; check kernel.perf_event_paranoid';
      }
      if (cmd === 'PROG_LOAD') {
        return 'needs CAP_BPF plus CAP_PERFMON (tracing) or CAP_NET_ADMIN (networking), or root; ' +
          'this kernel may also refuse the program type outright (e.g. trampolines, lockdown)';
      }
      return 'needs CAP_BPF (or CAP_SYS_ADMIN) or root; unprivileged BPF may be disabled (kernel.unprivileged_bpf_disabled)';
    case E.EACCES:
      return cmd === 'PROG_LOAD' ? 'the verifier rejected the program' : 'permission denied (needs root or the right capability)';
    case E.E2BIG:
      return 'the kernel does not know an attribute we passed: it is older than the feature requires';
    case E.ENOENT:
      return cmd?.startsWith('MAP_') ? 'no such key' : 'no such object';
    case E.EBADF:
      return 'a file descriptor passed to the kernel is not open (was the object closed?)';
    case E.ENOMEM:
      return 'the kernel is out of memory for BPF objects (before 5.11 raise RLIMIT_MEMLOCK)';
    case E.ENOSPC:
      return 'no space: the map is full or the log buffer is too small';
    case E.EINVAL:
      return 'the kernel rejected an argument (unsupported type, size, flag or attach point for this kernel)';
    case E.EEXIST:
      return 'already exists (BPF_NOEXIST set, or an attachment is already there)';
    case E.EOPNOTSUPP:
    case 524: // ENOTSUPP, kernel-internal
      return 'operation not supported by this kernel or object type';
    case E.EBUSY:
      return 'busy: something else is attached there';
    case E.EAGAIN:
      return 'temporarily unavailable, retry';
    case E.ENODEV:
      return 'no such device (interface index or PMU missing)';
    case E.ESRCH:
      return 'no such process or target';
    default:
      return '';
  }
}

// Capability bits (linux/capability.h) that BPF needs.
const CAPS = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 } as const;

/** This process's effective capabilities, from /proc/self/status (all set when it cannot be read). */
export function effectiveCapabilities(): bigint {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt('0x' + m[1]) : -1n;
  } catch {
    return -1n;
  }
}

/**
 * For an EPERM from bpf() or perf_event_open(): the capabilities this process lacks for it (CAP_SYS_ADMIN
 * stands in for the others), or undefined when it has them (then EPERM means something else: lockdown, a
 * sysctl, an LSM, a program type this kernel refuses).
 */
export function missingCapabilities(syscall: string, cmd: string | undefined, caps = effectiveCapabilities()): string[] | undefined {
  const has = (c: keyof typeof CAPS): boolean => ((caps >> BigInt(CAPS[c])) & 1n) === 1n;
  if (has('CAP_SYS_ADMIN')) return undefined;
  const needed: (keyof typeof CAPS)[] =
    syscall === 'perf_event_open' ? ['CAP_PERFMON'] : cmd === 'PROG_LOAD' ? ['CAP_BPF', 'CAP_PERFMON'] : ['CAP_BPF'];
  const missing = needed.filter((c) => !has(c));
  return missing.length ? missing : undefined;
}

/** A system call failed. `cmd` is the bpf() command name for bpf(). */
export class SyscallError extends TsbpfError {
  readonly syscall: string;
  readonly cmd?: string;
  /** errno name, e.g. `"EPERM"`. */
  readonly errno: string;
  readonly errnoCode: number;
  /** For EPERM: the capabilities this process lacks for the call (read from /proc/self/status), if any. */
  readonly missingCapabilities?: string[];
  constructor(syscall: string, cmd: string | undefined, errnoCode: number, context?: string, extraHint?: string) {
    const name = errnoName(errnoCode);
    const what = cmd ? `${syscall}(${cmd})` : syscall;
    // An EPERM is read once, here, against the process's capabilities: the message names what is missing.
    const missing = errnoCode === E.EPERM ? missingCapabilities(syscall, cmd) : undefined;
    const h = missing
      ? `this process lacks ${missing.join(' and ')}: run as root or grant ${missing.length > 1 ? 'them' : 'it'} (CAP_SYS_ADMIN also covers ${missing.length > 1 ? 'them' : 'it'})`
      : extraHint ?? hint(syscall, cmd, errnoCode);
    super(`${context ? context + ': ' : ''}${what} failed: ${name}${h ? ` (${h})` : ''}`);
    this.syscall = syscall;
    this.cmd = cmd;
    this.errno = name;
    this.errnoCode = errnoCode;
    if (missing) this.missingCapabilities = missing;
  }
}

/** A bpf() command failed. */
export class BpfError extends SyscallError {
  constructor(cmd: string, errnoCode: number, context?: string, extraHint?: string) {
    super('bpf', cmd, errnoCode, context, extraHint);
  }
}
