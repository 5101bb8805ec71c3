// XDP: a program on an interface's receive path, attached either as a bpf_link (BPF_LINK_CREATE with
// attach type BPF_XDP, 5.9+; detached when its last fd closes) or through rtnetlink (RTM_SETLINK with
// IFLA_XDP, any kernel with XDP; the kernel keeps it until someone removes it, so the Link removes it on
// close() and at process exit, and only if the program there is still ours).

import {
  BPF_ATTACH_TYPE, BPF_PROG_TYPE, BpfError, E, FD, NetlinkError, SyscallError, XDP_FLAGS, getFdById, getLink,
  getNextId, linkCreate, setLinkXdp, type XdpState,
} from '../syscall/index.js';
import { TsbpfError } from '../errors.js';
import { programTypeName, readProgramInfo, type Program } from '../programs/program.js';
import { Link, readLinkInfo } from './link.js';

export type XdpMode = 'skb' | 'drv' | 'hw';

export interface XdpOptions {
  /** Interface name or index (in this thread's network namespace). */
  iface: string | number;
  /**
   * 'skb' (generic XDP, any device, after the skb is built), 'drv' (native, in the driver; veth,
   * most 10G+ NICs), 'hw' (offloaded). Default: the kernel picks drv where the driver has it, else skb.
   */
  mode?: XdpMode;
  /**
   * 'link' (a bpf_link) or 'netlink' (RTM_SETLINK). Default: a link, or netlink when the kernel has no
   * XDP links (or refuses this one).
   */
  via?: 'link' | 'netlink';
  /**
   * Netlink only: replace a program already attached (by netlink) in that mode. Without it an attached
   * program is an error. A bpf_link never replaces anything: a link holding the hook is swapped with
   * `link.update(prog)` by its owner.
   */
  replace?: boolean;
}

const MODE_FLAGS: Record<XdpMode, number> = { skb: XDP_FLAGS.SKB_MODE, drv: XDP_FLAGS.DRV_MODE, hw: XDP_FLAGS.HW_MODE };

/** An interface by name or index, checked to exist: `{ ifindex, name }`. */
export function resolveInterface(iface: string | number, what: string): { ifindex: number; name: string } {
  if (typeof iface === 'number' ? !Number.isInteger(iface) || iface <= 0 : typeof iface !== 'string' || iface === '') {
    throw new TsbpfError(`${what}: invalid interface ${JSON.stringify(iface)} (want a name such as "eth0" or an ifindex > 0)`);
  }
  try {
    const l = getLink(iface);
    return { ifindex: l.ifindex, name: l.name || String(iface) };
  } catch (e) {
    if (e instanceof SyscallError && e.errnoCode === E.ENODEV) {
      throw new TsbpfError(`${what}: unknown interface ${JSON.stringify(iface)}: no such device in this network namespace (see \`ip link\`)`, { cause: e });
    }
    throw e;
  }
}

/** A description of a program id for error messages: `"xdp_pass" (id 42)`. */
export function describeProgId(id: number): string {
  try {
    const fd = getFdById('PROG_GET_FD_BY_ID', id);
    try {
      return `"${readProgramInfo(fd.value).name}" (id ${id})`;
    } finally {
      fd.close();
    }
  } catch {
    return `id ${id}`;
  }
}

/** The bpf_link (id) holding XDP on `ifindex`, if one does. */
function xdpLinkOn(ifindex: number): number | undefined {
  let id = 0;
  for (let i = 0; i < 100000; i++) {
    const next = getNextId('LINK_GET_NEXT_ID', id);
    if (next === null) return undefined;
    id = next;
    let fd: FD | undefined;
    try {
      fd = getFdById('LINK_GET_FD_BY_ID', id);
      const info = readLinkInfo(fd.value);
      if (info.typeName === 'xdp' && info.details.ifindex === ifindex) return id;
    } catch {
      /* gone meanwhile */
    } finally {
      fd?.close();
    }
  }
  return undefined;
}

/**
 * What is attached to XDP on the interface, in words, and what to do (for EBUSY, and EEXIST: a program in
 * the other mode, which cannot run alongside).
 */
function describeAttached(ifindex: number, name: string, otherMode: boolean): string {
  let st: XdpState;
  try {
    st = getLink(ifindex).xdp;
  } catch {
    return `something is already attached to XDP on ${name}`;
  }
  const parts: string[] = [];
  for (const [mode, id] of [['drv', st.drvProgId], ['skb', st.skbProgId], ['hw', st.hwProgId]] as const) {
    if (id) parts.push(`${describeProgId(id)} in ${mode} mode`);
  }
  if (!parts.length) return `something is already attached to XDP on ${name}`;
  if (otherMode) {
    return `${name} already runs XDP program ${parts.join(' and ')}; native (drv) and generic (skb) XDP cannot be active at the same time: attach in that mode, or detach it first`;
  }
  const linkId = xdpLinkOn(ifindex);
  const holder = linkId ? `held by bpf_link id ${linkId}: its owner must close it or swap the program with link.update()` : 'attached through netlink: pass { via: \'netlink\', replace: true } to swap it';
  return `${name} already runs XDP program ${parts.join(' and ')}, ${holder}`;
}

function explain(e: unknown, prog: Program, ifindex: number, name: string, mode: XdpMode | undefined): unknown {
  if (!(e instanceof SyscallError)) return e;
  const where = `attach XDP program "${prog.name}" to ${name}${mode ? ` in ${mode} mode` : ''}`;
  const ext = e instanceof NetlinkError && e.extAck ? ` (kernel: ${e.extAck})` : '';
  switch (e.errnoCode) {
    case E.EBUSY:
    case E.EEXIST:
      // EEXIST: a program in the other mode ("Native and generic XDP can't be active at the same time").
      return new TsbpfError(`${where}: ${describeAttached(ifindex, name, e.errnoCode === E.EEXIST)}${ext}`, { cause: e });
    case E.EOPNOTSUPP:
    case 524:
      if (mode === 'drv' || mode === undefined) {
        return new TsbpfError(`${where}: the driver of ${name} has no native XDP; use { mode: 'skb' } (generic XDP)${ext}`, { cause: e });
      }
      if (mode === 'hw') return new TsbpfError(`${where}: ${name} cannot offload XDP programs; use { mode: 'drv' } or 'skb'${ext}`, { cause: e });
      return e;
    case E.EINVAL:
      if (mode === 'hw') return new TsbpfError(`${where}: ${name} cannot offload XDP programs (and offloaded programs must be loaded for the device); use { mode: 'drv' } or 'skb'${ext}`, { cause: e });
      return e;
    case E.ENODEV:
      return new TsbpfError(`${where}: the interface is gone${ext}`, { cause: e });
    default:
      return e;
  }
}

/**
 * Attach an XDP program to an interface. The returned Link detaches on close() (and at process exit):
 * a bpf_link by closing it, a netlink attachment by removing the program only if it is still the one
 * attached.
 */
export function attachXdp(prog: Program, opts: XdpOptions): Link {
  if (prog.type !== BPF_PROG_TYPE.XDP) {
    throw new TsbpfError(`attach "${prog.name}" to XDP: it is a ${programTypeName(prog.type).toLowerCase()} program; XDP needs one loaded from SEC("xdp") (BPF_PROG_TYPE_XDP)`);
  }
  if (opts.mode !== undefined && !(opts.mode in MODE_FLAGS)) {
    throw new TsbpfError(`attach "${prog.name}" to XDP: unknown mode ${JSON.stringify(opts.mode)} (want 'skb', 'drv' or 'hw')`);
  }
  if (opts.via !== undefined && opts.via !== 'link' && opts.via !== 'netlink') {
    throw new TsbpfError(`attach "${prog.name}" to XDP: unknown via ${JSON.stringify(opts.via)} (want 'link' or 'netlink')`);
  }
  const { ifindex, name } = resolveInterface(opts.iface, `attach XDP program "${prog.name}"`);
  const modeFlags = opts.mode ? MODE_FLAGS[opts.mode] : 0;
  const target = name;

  if (opts.via !== 'netlink') {
    try {
      const fd = linkCreate({ progFd: prog.fd, targetIfindex: ifindex, attachType: BPF_ATTACH_TYPE.XDP, flags: modeFlags }, `attach XDP program "${prog.name}" to ${name}`);
      return new Link('xdp', target, prog.name, { fd });
    } catch (e) {
      const fallback =
        opts.via === undefined &&
        e instanceof BpfError &&
        // No XDP links (before 5.9), or a refusal netlink explains better (the driver's extack text),
        // or a netlink-attached program the caller asked to replace.
        (e.errnoCode === E.EINVAL || e.errnoCode === E.EOPNOTSUPP || e.errnoCode === 524 || (opts.replace === true && e.errnoCode === E.EBUSY));
      if (!fallback) throw explain(e, prog, ifindex, name, opts.mode);
    }
  }
  return attachXdpNetlink(prog, ifindex, name, modeFlags, opts);
}

function attachXdpNetlink(prog: Program, ifindex: number, name: string, modeFlags: number, opts: XdpOptions): Link {
  const flags = modeFlags | (opts.replace ? 0 : XDP_FLAGS.UPDATE_IF_NOEXIST);
  // Our own fd of the program: the detach names it as the expected one even if the caller closed theirs.
  const mine = prog.clone();
  let progId: number;
  try {
    progId = mine.info().id;
    setLinkXdp(ifindex, mine.fd, flags, undefined, `attach XDP program "${prog.name}" to ${name} through netlink`);
  } catch (e) {
    mine.close();
    throw explain(e, prog, ifindex, name, opts.mode);
  }
  const detach = (): void => {
    try {
      detachXdpNetlink(ifindex, mine, progId, modeFlags, name);
    } finally {
      mine.close();
    }
  };
  return new Link('xdp', name, prog.name, { detach });
}

function detachXdpNetlink(ifindex: number, mine: Program, progId: number, modeFlags: number, name: string): void {
  const context = `detach XDP program "${mine.name}" from ${name}`;
  try {
    // Remove the program only if it is still ours (XDP_FLAGS_REPLACE + IFLA_XDP_EXPECTED_FD, 5.7+).
    setLinkXdp(ifindex, -1, modeFlags | XDP_FLAGS.REPLACE, mine.fd, context);
    return;
  } catch (e) {
    if (!(e instanceof SyscallError)) throw e;
    // The interface is gone (and the program with it), or another program replaced ours.
    if (e.errnoCode === E.ENODEV || e.errnoCode === E.EEXIST || e.errnoCode === E.ENOENT) return;
    if (e.errnoCode !== E.EINVAL && e.errnoCode !== E.EOPNOTSUPP) throw e;
  }
  // Kernels before 5.7: check, then remove.
  let st: XdpState;
  try {
    st = getLink(ifindex).xdp;
  } catch (e) {
    if (e instanceof SyscallError && e.errnoCode === E.ENODEV) return;
    throw e;
  }
  const current = modeFlags === XDP_FLAGS.SKB_MODE ? st.skbProgId : modeFlags === XDP_FLAGS.DRV_MODE ? st.drvProgId : modeFlags === XDP_FLAGS.HW_MODE ? st.hwProgId : st.progId;
  if (current !== progId) return;
  setLinkXdp(ifindex, -1, modeFlags, undefined, context);
}

/** What is attached to XDP on an interface (RTM_GETLINK): mode and program ids per mode. */
export function queryXdp(iface: string | number): XdpState {
  const { ifindex } = resolveInterface(iface, 'query XDP');
  return getLink(ifindex).xdp;
}
