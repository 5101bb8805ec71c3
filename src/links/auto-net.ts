// Auto-attach for the networking sections (xdp, tc, tcx): they name a hook but no interface, so the
// interface comes from the caller (`tsbpf load --attach --iface eth0`).

import { TsbpfError } from '../errors.js';
import type { ProgramSpec } from '../elf/spec.js';
import type { Program } from '../programs/program.js';
import type { Link } from './link.js';
import { attachXdp } from './xdp.js';
import { attachTc, type TcDirection } from './tc.js';

export interface AutoAttachNetOptions {
  /** The interface to attach to (name or index). */
  iface?: string | number;
  /** For SEC("tc")/SEC("classifier"), which name no direction. */
  direction?: TcDirection;
}

type Plan =
  | { kind: 'xdp'; section: string }
  | { kind: 'tc'; section: string; direction?: TcDirection }
  | { kind: 'refuse'; why: string };

function plan(spec: ProgramSpec): Plan | null {
  const section = spec.section.startsWith('?') ? spec.section.slice(1) : spec.section;
  switch (section) {
    case 'xdp':
    case 'xdp.frags':
      return { kind: 'xdp', section };
    case 'xdp/devmap':
    case 'xdp.frags/devmap':
    case 'xdp/cpumap':
    case 'xdp.frags/cpumap':
      return { kind: 'refuse', why: `${section} programs run from ${section.endsWith('devmap') ? 'a devmap' : 'a cpumap'} entry, not on an interface` };
    case 'tcx/ingress':
    case 'tc/ingress':
      return { kind: 'tc', section, direction: 'ingress' };
    case 'tcx/egress':
    case 'tc/egress':
      return { kind: 'tc', section, direction: 'egress' };
    case 'tc':
    case 'classifier':
      return { kind: 'tc', section };
    case 'action':
      return { kind: 'refuse', why: 'action programs run from a tc action of a filter, not on an interface' };
    default:
      return null;
  }
}

/**
 * null: not a networking section (someone else's); undefined: can be attached with these options; a
 * string: why not (e.g. "xdp needs --iface").
 */
export function autoAttachNetSupport(spec: ProgramSpec, opts: AutoAttachNetOptions = {}): string | undefined | null {
  const p = plan(spec);
  if (!p) return null;
  if (p.kind === 'refuse') return p.why;
  if (p.kind === 'tc' && !p.direction && !opts.direction) {
    return `SEC("${p.section}") names no direction; use SEC("tcx/ingress") or SEC("tcx/egress"), or attachTc(prog, { iface, direction })`;
  }
  if (opts.iface === undefined || opts.iface === '') return `${p.section} needs --iface (an interface to attach to)`;
  return undefined;
}

/** Attach a networking program where its section says, on `opts.iface`; undefined when the section is not one. */
export function autoAttachNet(prog: Program, spec: ProgramSpec, opts: AutoAttachNetOptions = {}): Link | undefined {
  const p = plan(spec);
  if (!p) return undefined;
  const why = autoAttachNetSupport(spec, opts);
  if (why) throw new TsbpfError(`program "${spec.name}" (SEC "${spec.section}"): cannot auto-attach: ${why}`);
  const iface = opts.iface!;
  if (p.kind === 'xdp') return attachXdp(prog, { iface });
  if (p.kind === 'tc') return attachTc(prog, { iface, direction: (p.direction ?? opts.direction)! });
  return undefined;
}
