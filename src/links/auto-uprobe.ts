// Auto-attach of the uprobe family from section names (libbpf's conventions):
//   uprobe/BINARY:FUNCTION[+OFFSET]   uretprobe/...      (also uprobe.s / uretprobe.s)
//   uprobe/BINARY:OFFSET              (a file offset, decimal or 0x hex)
//   uprobe.multi/BINARY:PATTERN       uretprobe.multi/... (glob over function names; also .s)
//   usdt/BINARY:PROVIDER:NAME
// BINARY is a path (`uprobe//usr/bin/bash:readline`) or a library name (`uprobe/libc.so.6:malloc`).
// A section without a target (`SEC("uprobe")`) is attached by hand with attachUprobe & co.

import { TsbpfError } from '../errors.js';
import type { ProgramSpec } from '../elf/spec.js';
import type { Program } from '../programs/program.js';
import type { Link } from './link.js';
import { attachUprobe, attachUprobeMulti } from './uprobe.js';
import { attachUsdt } from './usdt.js';

type Parsed =
  | { kind: 'uprobe'; retprobe: boolean; binary: string; symbol?: string; offset?: number }
  | { kind: 'multi'; retprobe: boolean; binary: string; pattern: string }
  | { kind: 'usdt'; binary: string; provider: string; name: string };

const KINDS = new Set(['uprobe', 'uretprobe', 'uprobe.multi', 'uretprobe.multi', 'usdt']);

/** Parse the target of a uprobe-family section; a string says why it is not attachable, null: not ours. */
function parse(spec: ProgramSpec): Parsed | string | null {
  const kind = spec.sectionKind;
  if (!KINDS.has(kind)) return null;
  const t = spec.attachTo;
  if (!t) {
    return `section "${spec.section}" names no target (want ${kind === 'usdt' ? 'usdt/BINARY:PROVIDER:NAME' : kind.endsWith('.multi') ? `${kind}/BINARY:PATTERN` : `${kind}/BINARY:FUNCTION[+OFFSET]`}); attach it with ${kind === 'usdt' ? 'attachUsdt' : kind.endsWith('.multi') ? 'attachUprobeMulti' : 'attachUprobe'}()`;
  }
  if (kind === 'usdt') {
    const m = /^([^:]+):([^:]+):([^:]+)$/.exec(t);
    if (!m) return `section "${spec.section}": want usdt/BINARY:PROVIDER:NAME`;
    return { kind: 'usdt', binary: m[1], provider: m[2], name: m[3] };
  }
  const retprobe = kind.startsWith('uretprobe');
  const colon = t.lastIndexOf(':');
  if (colon <= 0 || colon === t.length - 1) return `section "${spec.section}": want ${kind}/BINARY:${kind.endsWith('.multi') ? 'PATTERN' : 'FUNCTION[+OFFSET]'}`;
  const binary = t.slice(0, colon);
  const fn = t.slice(colon + 1);
  if (kind.endsWith('.multi')) return { kind: 'multi', retprobe, binary, pattern: fn };
  if (/^(0x[0-9a-fA-F]+|\d+)$/.test(fn)) return { kind: 'uprobe', retprobe, binary, offset: Number(fn) };
  const m = /^([^+]+)(?:\+(0x[0-9a-fA-F]+|\d+))?$/.exec(fn);
  if (!m) return `section "${spec.section}": cannot read "${fn}" as FUNCTION[+OFFSET]`;
  return { kind: 'uprobe', retprobe, binary, symbol: m[1], ...(m[2] ? { offset: Number(m[2]) } : {}) };
}

/**
 * For the uprobe family: undefined when `spec` can be auto-attached, a string saying why not; null when the
 * section is not a uprobe/uretprobe/uprobe.multi/uretprobe.multi/usdt section.
 */
export function autoAttachUprobeSupport(spec: ProgramSpec): string | undefined | null {
  const p = parse(spec);
  return p === null ? null : typeof p === 'string' ? p : undefined;
}

export interface AutoAttachUprobeOptions {
  /** Only this process (-1 or undefined: every process). */
  pid?: number;
  /** BPF cookie (uprobe), `usdt_cookie()` value (usdt). */
  cookie?: bigint;
}

/**
 * Attach `prog` where its uprobe-family section says. undefined when the section is not one of ours
 * (see autoAttachUprobeSupport); throws a TsbpfError when it is ours but names no usable target.
 */
export function autoAttachUprobe(prog: Program, spec: ProgramSpec, opts: AutoAttachUprobeOptions = {}): Link | Link[] | undefined {
  const p = parse(spec);
  if (p === null) return undefined;
  if (typeof p === 'string') throw new TsbpfError(`program "${spec.name}" (SEC "${spec.section}"): cannot auto-attach: ${p}`);
  switch (p.kind) {
    case 'uprobe':
      return attachUprobe(prog, { binary: p.binary, symbol: p.symbol, offset: p.offset, retprobe: p.retprobe, pid: opts.pid, cookie: opts.cookie });
    case 'multi':
      return attachUprobeMulti(prog, { binary: p.binary, symbols: p.pattern, retprobe: p.retprobe, pid: opts.pid });
    case 'usdt':
      return attachUsdt(prog, { binary: p.binary, provider: p.provider, name: p.name, pid: opts.pid, cookie: opts.cookie });
  }
}
