// USDT (statically defined user-space tracepoints, the `.note.stapsdt` probes of sys/sdt.h): a uprobe at
// every site of provider:name, with the site's semaphore raised through ref_ctr_offset, and the site's
// argument layout stored in the program's `tsbpf_usdt_spec` map (bpf/usdt.h) under a spec id that is also
// the probe's BPF cookie, so `usdt_arg(ctx, n, &v)` in the program can decode the arguments of any site.

import { BPF_MAP_TYPE, BpfError, E } from '../syscall/index.js';
import { TsbpfError } from '../errors.js';
import { openBinary, parseUsdtArgs, type NativeElf, type UsdtArg, type UsdtNote } from '../elf/binary.js';
import { BpfMap, UpdateFlags } from '../maps/map.js';
import type { Program } from '../programs/program.js';
import type { Link } from './link.js';
import { linkPerfEvent, checkKprobeProgram } from './uprobe.js';
import { perfEventOpenUprobe } from '../syscall/uprobe-sys.js';

/** Name of the spec map bpf/usdt.h declares (15 characters: fits the kernel's object name). */
export const USDT_SPEC_MAP = 'tsbpf_usdt_spec';
/** Mirrors bpf/usdt.h. */
export const USDT_MAX_ARGS = 12;
const ARG_SIZE = 16;
const SPEC_SIZE = USDT_MAX_ARGS * ARG_SIZE + 16;
const KIND = { const: 0, reg: 1, mem: 2 } as const;

export interface UsdtOptions {
  /** Path of the executable or library, a library name (`libc.so.6`) or a program in $PATH. */
  binary: string;
  provider: string;
  name: string;
  /** Only this process (-1 or undefined: every process; 0: this process). */
  pid?: number;
  /** Returned by `usdt_cookie(ctx)` in the program. */
  cookie?: bigint;
  /**
   * The program's spec map, when it cannot be found from the program itself (by default the map named
   * `tsbpf_usdt_spec` among the program's maps is used; without one the program gets no argument specs and
   * `cookie` becomes the raw BPF cookie).
   */
  specMap?: BpfMap;
}

/** A USDT site with its parsed arguments. */
export interface UsdtSite extends UsdtNote {
  args: UsdtArg[];
  path: string;
}

/** The USDT sites of `binary` (all, or those of `provider` / `provider:name`). */
export function findUsdtSites(binary: string | NativeElf, provider?: string, name?: string): UsdtSite[] {
  const elf = typeof binary === 'string' ? openBinary(binary) : binary;
  return elf
    .usdtNotes()
    .filter((n) => (provider === undefined || n.provider === provider) && (name === undefined || n.name === name))
    .map((n) => ({ ...n, path: elf.path, args: parseUsdtArgs(n.argSpec, elf.machine, `${elf.path}: USDT ${n.provider}:${n.name} at 0x${n.pc.toString(16)}`) }));
}

/** The bytes of a `struct tsbpf_usdt_spec` (bpf/usdt.h) for these arguments. */
export function encodeUsdtSpec(args: UsdtArg[], cookie = 0n): Buffer {
  if (args.length > USDT_MAX_ARGS) throw new TsbpfError(`a USDT site with ${args.length} arguments: bpf/usdt.h holds at most ${USDT_MAX_ARGS}`);
  const b = Buffer.alloc(SPEC_SIZE);
  args.forEach((a, i) => {
    const o = i * ARG_SIZE;
    b.writeBigUInt64LE(BigInt.asUintN(64, a.value), o);
    b.writeUInt32LE(KIND[a.kind], o + 8);
    b.writeInt16LE(a.regOffset ?? 0, o + 12);
    b.writeUInt8(a.signed ? 1 : 0, o + 14);
    b.writeUInt8(64 - a.size * 8, o + 15);
  });
  b.writeBigUInt64LE(BigInt.asUintN(64, cookie), USDT_MAX_ARGS * ARG_SIZE);
  b.writeUInt16LE(args.length, USDT_MAX_ARGS * ARG_SIZE + 8);
  return b;
}

/** Spec ids in use, by map id (ids are the BPF cookies of USDT probes; 0 is never used). */
const usedIds = new Map<number, Set<number>>();

function findSpecMap(prog: Program): BpfMap | undefined {
  for (const id of prog.info().mapIds) {
    let m: BpfMap | undefined;
    try {
      m = BpfMap.fromId(id);
    } catch {
      continue;
    }
    if (m.name === USDT_SPEC_MAP) return m;
    m.close();
  }
  return undefined;
}

/**
 * Attach `prog` (`SEC("usdt")`, a kprobe-type program) to every site of USDT probe `provider:name` in
 * `binary`: one uprobe a site, with the probe's semaphore raised while attached. Returns the Link of the
 * site, or one Link per site when the probe has several; closing a Link detaches its site and frees its
 * argument spec.
 */
export function attachUsdt(prog: Program, opts: UsdtOptions): Link | Link[] {
  const what = `USDT ${opts.provider}:${opts.name}`;
  checkKprobeProgram(prog, what, 'usdt');
  const pid = opts.pid === undefined || opts.pid === -1 ? -1 : opts.pid === 0 ? process.pid : opts.pid;
  const prefix = `attach "${prog.name}" to ${what} in ${opts.binary}`;
  let elf: NativeElf;
  let sites: UsdtSite[];
  try {
    elf = openBinary(opts.binary, pid);
    sites = findUsdtSites(elf, opts.provider, opts.name);
  } catch (e) {
    if (e instanceof TsbpfError) e.message = `${prefix}: ${e.message}`;
    throw e;
  }
  if (sites.length === 0) {
    const all = elf.usdtNotes();
    const known = [...new Set(all.map((n) => `${n.provider}:${n.name}`))];
    throw new TsbpfError(
      `${prefix}: ${elf.path} has no such USDT probe` +
        (known.length ? ` (it has ${known.slice(0, 10).join(', ')}${known.length > 10 ? ', …' : ''})` : ' (it has no .note.stapsdt section)'),
    );
  }

  const ownedMap = opts.specMap ? undefined : findSpecMap(prog);
  const map = opts.specMap ?? ownedMap;
  if (map && (map.type !== BPF_MAP_TYPE.HASH || map.keySize !== 4 || map.valueSize !== SPEC_SIZE)) {
    ownedMap?.close();
    throw new TsbpfError(`${prefix}: map "${map.name}" is not the spec map of bpf/usdt.h (want a hash, 4-byte keys, ${SPEC_SIZE}-byte values)`);
  }
  const mapId = map ? map.info().id : 0;
  let used = usedIds.get(mapId);
  if (!used) usedIds.set(mapId, (used = new Set()));
  let refs = 0;
  const release = (): void => {
    if (--refs === 0) ownedMap?.close();
  };

  const links: Link[] = [];
  try {
    for (const site of sites) {
      const target = `${elf.path}:${opts.provider}:${opts.name}@0x${site.offset.toString(16)}${pid === -1 ? '' : ` (pid ${pid})`}`;
      let cookie = opts.cookie;
      let specId = 0;
      if (map) {
        const spec = encodeUsdtSpec(site.args, opts.cookie ?? 0n);
        for (specId = 1; ; specId++) {
          if (specId > map.maxEntries * 4) throw new TsbpfError(`${prefix}: no free spec id in ${map.name} (${map.maxEntries} entries): close other USDT links or raise USDT_MAX_SPECS`);
          if (used.has(specId)) continue;
          try {
            map.update(specId, spec, UpdateFlags.NOEXIST);
            break;
          } catch (e) {
            // Taken by another process sharing the map: try the next id.
            if (e instanceof BpfError && e.errnoCode === E.EEXIST) continue;
            if (e instanceof BpfError && e.errnoCode === E.E2BIG) {
              throw new TsbpfError(`${prefix}: spec map ${map.name} is full (${map.maxEntries} entries): close other USDT links or raise USDT_MAX_SPECS`, { cause: e });
            }
            throw e;
          }
        }
        used.add(specId);
        cookie = BigInt(specId);
      }
      const id = specId;
      let perf;
      try {
        perf = perfEventOpenUprobe({ path: elf.path, offset: site.offset, refCtrOffset: site.semaphoreOffset }, pid, `attach "${prog.name}" to usdt ${target}`);
      } catch (e) {
        if (map) {
          map.delete(id);
          used.delete(id);
        }
        throw e;
      }
      const detach = map
        ? (): void => {
            try {
              if (!map.closed) map.delete(id);
            } finally {
              used.delete(id);
              release();
            }
          }
        : undefined;
      refs++;
      let link: Link;
      try {
        link = linkPerfEvent(prog, perf, 'usdt', target, cookie, detach ? { detach } : {});
      } catch (e) {
        detach?.();
        if (!detach) refs--;
        throw e;
      }
      links.push(link);
    }
  } catch (e) {
    for (const l of links) {
      try {
        l.close();
      } catch {
        /* the first error matters */
      }
    }
    if (refs === 0) ownedMap?.close();
    throw e;
  }
  if (refs === 0) ownedMap?.close();
  return links.length === 1 ? links[0] : links;
}
