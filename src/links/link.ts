// Links: a program attached to a hook. Closing the link detaches it; so does
// process exit (the kernel drops an unpinned link with its last fd).

import { readFileSync } from 'node:fs';
import {
  BPF_ATTACH_TYPE, FD, PERF_TYPE, PERF_EVENT_IOC, perfEventOpen, ioctl, linkCreate, rawTracepointOpen, objPin,
  ensureTracefs, BpfError, E,
} from '../syscall/index.js';
import { ClosedError, NotSupportedError, TsbpfError } from '../errors.js';
import type { Program } from '../programs/program.js';

export class Link {
  readonly kind: string;
  readonly target: string;
  readonly program: string;
  #fd: FD | undefined;
  /** A perf event that must stay open as long as the link (tracepoint attach). */
  #perf: FD | undefined;

  constructor(kind: string, target: string, program: string, fd: FD | undefined, perf?: FD) {
    this.kind = kind;
    this.target = target;
    this.program = program;
    this.#fd = fd;
    this.#perf = perf;
  }

  /** The bpf_link fd (or the perf event fd for links made with the ioctl fallback). */
  get fd(): number {
    const f = this.#fd ?? this.#perf;
    if (!f || f.closed) throw new ClosedError(`link ${this.kind}:${this.target} is closed`);
    return f.value;
  }

  /** true when the kernel gave a real bpf_link (pinnable, updatable). */
  get isBpfLink(): boolean {
    return this.#fd !== undefined;
  }

  get closed(): boolean {
    return (this.#fd?.closed ?? true) && (this.#perf?.closed ?? true);
  }

  pin(path: string): void {
    if (!this.#fd) throw new TsbpfError(`link ${this.kind}:${this.target} is not a bpf_link (attached with the perf ioctl fallback) and cannot be pinned`);
    objPin(this.fd, path, `link ${this.kind}:${this.target}: pin to ${path}`);
  }

  /** Detach. Idempotent. */
  close(): void {
    this.#fd?.close();
    if (this.#perf && !this.#perf.closed) {
      // Without a bpf_link the program is attached through the perf event: disabling first
      // makes the detach immediate even if someone else dup'ed the fd.
      if (!this.#fd) {
        try {
          ioctl(this.#perf.value, PERF_EVENT_IOC.DISABLE, 0);
        } catch {
          /* closing detaches anyway */
        }
      }
      this.#perf.close();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }

  toString(): string {
    return `Link(${this.kind}:${this.target} → ${this.program})`;
  }
}

/** The tracefs id of `category/name`, or a NotSupportedError naming the tracepoint. */
export function tracepointId(category: string, name: string): number {
  if (!/^[\w.-]+$/.test(category) || !/^[\w.-]+$/.test(name)) {
    throw new TsbpfError(`invalid tracepoint name "${category}/${name}"`);
  }
  const root = ensureTracefs();
  const path = `${root}/events/${category}/${name}/id`;
  try {
    return parseInt(readFileSync(path, 'utf8'), 10);
  } catch {
    throw new NotSupportedError(`tracepoint ${category}/${name}`, undefined, `${path} does not exist (see ${root}/available_events)`);
  }
}

/** Attach to a tracepoint (`tp/<category>/<name>`): a perf event plus a bpf_link (ioctl fallback before 5.15). */
export function attachTracepoint(prog: Program, category: string, name: string, cookie?: bigint): Link {
  const id = tracepointId(category, name);
  const target = `${category}/${name}`;
  const perf = perfEventOpen(
    { type: PERF_TYPE.TRACEPOINT, config: BigInt(id), sample_period: 1n, wakeup_events: 1 },
    -1,
    0,
    -1,
    0n,
    `tracepoint ${target}`,
  );
  try {
    try {
      const fd = linkCreate({ progFd: prog.fd, targetFd: perf.value, attachType: BPF_ATTACH_TYPE.PERF_EVENT, bpfCookie: cookie }, `attach "${prog.name}" to tracepoint ${target}`);
      return new Link('tracepoint', target, prog.name, fd, perf);
    } catch (e) {
      // Kernels before 5.15 have no perf_event bpf_link: use the ioctls.
      if (!(e instanceof BpfError) || (e.errnoCode !== E.EINVAL && e.errnoCode !== E.E2BIG && e.errnoCode !== E.EOPNOTSUPP)) throw e;
      if (cookie) throw new NotSupportedError('BPF cookies on perf events', '5.15');
      ioctl(perf.value, PERF_EVENT_IOC.SET_BPF, prog.fd, `attach "${prog.name}" to tracepoint ${target}`);
      ioctl(perf.value, PERF_EVENT_IOC.ENABLE, 0, `enable tracepoint ${target}`);
      return new Link('tracepoint', target, prog.name, undefined, perf);
    }
  } catch (e) {
    perf.close();
    throw e;
  }
}

/** Attach a `raw_tp` program to the raw tracepoint `name`. */
export function attachRawTracepoint(prog: Program, name: string): Link {
  const fd = rawTracepointOpen(prog.fd, name, `attach "${prog.name}" to raw tracepoint ${name}`);
  return new Link('raw_tracepoint', name, prog.name, fd);
}

/**
 * Attach a BTF-typed program whose target was fixed at load (tp_btf, fentry,
 * fexit, fmod_ret, lsm, iter is separate): BPF_RAW_TRACEPOINT_OPEN with no name.
 */
export function attachTracing(prog: Program, target: string, kind = 'tracing'): Link {
  const fd = rawTracepointOpen(prog.fd, null, `attach "${prog.name}" (${kind}) to ${target}`);
  return new Link(kind, target, prog.name, fd);
}
