// `tsbpf prog list`, `tsbpf map list`, `tsbpf link list` (the kernel's BPF objects, like `bpftool prog|map|link
// show`, with the processes holding fds to them) and `tsbpf map dump ID|PIN` (entries decoded through the
// map's BTF, hex otherwise).

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { getFdById, getNextId } from '../syscall/bpf.js';
import { BpfError } from '../syscall/errors.js';
import { readProgramInfo, programTypeName, readBtfById, type ProgramInfo } from '../programs/program.js';
import { BpfMap, mapTypeName, readMapInfo, type MapInfo } from '../maps/map.js';
import { readLinkInfo, type LinkInfo } from '../links/link.js';
import type { Btf } from '../btf/btf.js';
import { jsonSafe, showValue } from './inspect.js';
import { cTypeName } from '../btf/names.js';

export interface Holder {
  pid: number;
  comm: string;
}

export interface FdHolders {
  progs: Map<number, Holder[]>;
  maps: Map<number, Holder[]>;
  links: Map<number, Holder[]>;
}

/**
 * Which processes hold fds to which BPF objects: /proc/PID/fd entries that are BPF anon inodes, and the
 * `prog_id`/`map_id`/`link_id` of their fdinfo. This process is left out. Processes we may not inspect
 * are skipped.
 */
export function bpfFdHolders(): FdHolders {
  const res: FdHolders = { progs: new Map(), maps: new Map(), links: new Map() };
  const add = (m: Map<number, Holder[]>, id: number, h: Holder): void => {
    const l = m.get(id);
    if (!l) m.set(id, [h]);
    else if (!l.some((x) => x.pid === h.pid)) l.push(h);
  };
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return res;
  }
  for (const p of pids) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {
      continue;
    }
    let comm: string | undefined;
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${p}/fd/${fd}`);
      } catch {
        continue;
      }
      const kind = target === 'anon_inode:bpf-prog' ? 'prog' : target === 'anon_inode:bpf-map' ? 'map' : target === 'anon_inode:bpf_link' ? 'link' : undefined;
      if (!kind) continue;
      let info: string;
      try {
        info = readFileSync(`/proc/${p}/fdinfo/${fd}`, 'utf8');
      } catch {
        continue;
      }
      const field = kind === 'prog' ? 'prog_id' : kind === 'map' ? 'map_id' : 'link_id';
      const m = new RegExp(`^${field}:\\s*(\\d+)`, 'm').exec(info);
      if (!m) continue;
      if (comm === undefined) {
        try {
          comm = readFileSync(`/proc/${p}/comm`, 'utf8').trim();
        } catch {
          comm = '';
        }
      }
      add(kind === 'prog' ? res.progs : kind === 'map' ? res.maps : res.links, Number(m[1]), { pid, comm });
    }
  }
  return res;
}

type IdCmd = 'PROG_GET_NEXT_ID' | 'MAP_GET_NEXT_ID' | 'LINK_GET_NEXT_ID';
type FdCmd = 'PROG_GET_FD_BY_ID' | 'MAP_GET_FD_BY_ID' | 'LINK_GET_FD_BY_ID';

/** Info of every object of one kind, by id order; objects that vanish meanwhile are skipped. */
function listAll<T>(next: IdCmd, byId: FdCmd, read: (fd: number) => T): T[] {
  const out: T[] = [];
  for (let id = getNextId(next, 0); id !== null; id = getNextId(next, id)) {
    let fd;
    try {
      fd = getFdById(byId, id);
    } catch (e) {
      if (e instanceof BpfError && e.errno === 'ENOENT') continue;
      throw e;
    }
    try {
      out.push(read(fd.value));
    } finally {
      fd.close();
    }
  }
  return out;
}

export function listPrograms(): ProgramInfo[] {
  return listAll('PROG_GET_NEXT_ID', 'PROG_GET_FD_BY_ID', readProgramInfo);
}

export function listMaps(): MapInfo[] {
  return listAll('MAP_GET_NEXT_ID', 'MAP_GET_FD_BY_ID', readMapInfo);
}

export function listLinks(): LinkInfo[] {
  return listAll('LINK_GET_NEXT_ID', 'LINK_GET_FD_BY_ID', readLinkInfo);
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

function pidsText(h: Holder[] | undefined): string {
  return h?.length ? h.map((x) => `${x.comm}(${x.pid})`).join(',') : '-';
}

function write(s: string): Promise<void> {
  return new Promise((resolve, reject) => process.stdout.write(s, (e) => (e ? reject(e) : resolve())));
}

function lower(s: string): string {
  return s.toLowerCase();
}

const LIST_USAGE = (what: string): string => `Usage: tsbpf ${what} list [--json]   (also: show)${what === 'map' ? '\n       tsbpf map dump ID|PIN [--json]   entries decoded through the map\'s BTF (hex without BTF)' : ''}
`;

function parseListArgs(argv: string[]): { json: boolean; help: boolean; ids: number[] } {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  const ids: number[] = [];
  for (let i = 0; i < positionals.length; i++) {
    const p = positionals[i] === 'id' ? positionals[++i] : positionals[i];
    if (!/^\d+$/.test(p ?? '')) throw new TypeError(`expected an id, got "${p}"`);
    ids.push(Number(p));
  }
  return { json: values.json === true, help: values.help === true, ids };
}

export async function progCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'list' && sub !== 'show') {
    (sub === '-h' || sub === '--help' ? process.stdout : process.stderr).write(LIST_USAGE('prog'));
    return sub === '-h' || sub === '--help' ? 0 : 2;
  }
  const a = parseListArgs(rest);
  if (a.help) return void (await write(LIST_USAGE('prog'))), 0;
  const holders = bpfFdHolders();
  const progs = listPrograms().filter((p) => !a.ids.length || a.ids.includes(p.id));
  const rows = progs.map((p) => ({
    id: p.id,
    type: lower(programTypeName(p.type)),
    name: p.name,
    tag: p.tag,
    gplCompatible: p.gplCompatible,
    loadTime: p.loadTime,
    uid: p.createdByUid,
    xlatedBytes: p.xlatedInsns * 8,
    jitedBytes: p.jitedBytes,
    mapIds: p.mapIds,
    btfId: p.btfId,
    verifiedInsns: p.verifiedInsns,
    runCount: p.runCount,
    runTimeNs: p.runTimeNs,
    pids: holders.progs.get(p.id) ?? [],
  }));
  if (a.json) {
    await write(JSON.stringify(jsonSafe(rows)) + '\n');
    return 0;
  }
  await write(table([
    ['ID', 'TYPE', 'NAME', 'TAG', 'XLATED', 'JITED', 'MAPS', 'BTF', 'PIDS'],
    ...rows.map((r) => [String(r.id), r.type, r.name || '-', r.tag, `${r.xlatedBytes}B`, `${r.jitedBytes}B`, r.mapIds.join(',') || '-', r.btfId ? String(r.btfId) : '-', pidsText(r.pids)]),
  ]) + '\n');
  return 0;
}

export async function linkCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'list' && sub !== 'show') {
    (sub === '-h' || sub === '--help' ? process.stdout : process.stderr).write(LIST_USAGE('link'));
    return sub === '-h' || sub === '--help' ? 0 : 2;
  }
  const a = parseListArgs(rest);
  if (a.help) return void (await write(LIST_USAGE('link'))), 0;
  const holders = bpfFdHolders();
  const rows = listLinks().filter((l) => !a.ids.length || a.ids.includes(l.id)).map((l) => ({
    id: l.id,
    type: l.typeName,
    progId: l.progId,
    ...(l.name !== undefined ? { target: l.name } : {}),
    details: l.details,
    pids: holders.links.get(l.id) ?? [],
  }));
  if (a.json) {
    await write(JSON.stringify(jsonSafe(rows)) + '\n');
    return 0;
  }
  await write(table([
    ['ID', 'TYPE', 'PROG', 'ATTACH', 'PIDS'],
    ...rows.map((r) => [
      String(r.id), r.type, String(r.progId),
      [r.target, ...Object.entries(r.details).filter(([, v]) => v !== 0 && v !== 0n).map(([k, v]) => `${k}=${v}`)].filter(Boolean).join(' ') || '-',
      pidsText(r.pids),
    ]),
  ]) + '\n');
  return 0;
}

function openMap(ref: string): BpfMap {
  if (/^\d+$/.test(ref)) return BpfMap.fromId(Number(ref));
  return BpfMap.fromPin(ref);
}

/** Entries of a map, decoded through its BTF (fetched by btf_id) where it has key/value types. */
export function dumpMap(map: BpfMap): { btf: boolean; keyType?: string; valueType?: string; entries: { key: unknown; value: unknown }[] } {
  const info = map.info();
  let btf: Btf | undefined;
  if (info.btfId && (info.btfKeyTypeId || info.btfValueTypeId)) {
    try {
      btf = readBtfById(info.btfId);
      map.setTypes(btf, info.btfKeyTypeId || undefined, info.btfValueTypeId || undefined);
    } catch {
      btf = undefined;
    }
  }
  const { key: kc, value: vc } = map.codecs;
  const entries: { key: unknown; value: unknown }[] = [];
  for (const [k, v] of map.entries()) {
    const key = kc ? kc.decode(k, 0, { enumNames: true }) : k;
    const value = vc ? (Array.isArray(v) ? v.map((b) => vc.decode(b, 0, { enumNames: true })) : vc.decode(v as Buffer, 0, { enumNames: true })) : v;
    entries.push({ key, value });
  }
  return {
    btf: btf !== undefined,
    ...(btf && info.btfKeyTypeId ? { keyType: cTypeName(btf, info.btfKeyTypeId) } : {}),
    ...(btf && info.btfValueTypeId ? { valueType: cTypeName(btf, info.btfValueTypeId) } : {}),
    entries,
  };
}

function hexOrValue(v: unknown): string {
  if (Buffer.isBuffer(v)) return v.toString('hex').replace(/(..)(?!$)/g, '$1 ');
  if (Array.isArray(v) && v.every((x) => Buffer.isBuffer(x))) return `[${v.map(hexOrValue).join(' | ')}]`;
  return showValue(v);
}

export async function mapCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'dump') {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { json: { type: 'boolean' } } });
    const ref = positionals[0] === 'id' || positionals[0] === 'pinned' ? positionals[1] : positionals[0];
    if (ref === undefined || positionals.length > (positionals[0] === 'id' || positionals[0] === 'pinned' ? 2 : 1)) {
      process.stderr.write(LIST_USAGE('map'));
      return 2;
    }
    const map = openMap(ref);
    try {
      const d = dumpMap(map);
      if (values.json) {
        await write(JSON.stringify(jsonSafe(d.entries)) + '\n');
      } else {
        const head = `map ${map.info().id} "${map.name}" (${lower(mapTypeName(map.type))}): ${d.entries.length} entries` +
          (d.btf ? `, key ${d.keyType ?? `${map.keySize}B`}, value ${d.valueType ?? `${map.valueSize}B`}` : ', no BTF: hex');
        await write([head, ...d.entries.map((e) => `key: ${hexOrValue(e.key)}  value: ${hexOrValue(e.value)}`)].join('\n') + '\n');
      }
    } finally {
      map.close();
    }
    return 0;
  }
  if (sub !== 'list' && sub !== 'show') {
    (sub === '-h' || sub === '--help' ? process.stdout : process.stderr).write(LIST_USAGE('map'));
    return sub === '-h' || sub === '--help' ? 0 : 2;
  }
  const a = parseListArgs(rest);
  if (a.help) return void (await write(LIST_USAGE('map'))), 0;
  const holders = bpfFdHolders();
  const rows = listMaps().filter((m) => !a.ids.length || a.ids.includes(m.id)).map((m) => ({
    id: m.id,
    type: lower(mapTypeName(m.type)),
    name: m.name,
    flags: m.flags,
    keySize: m.keySize,
    valueSize: m.valueSize,
    maxEntries: m.maxEntries,
    btfId: m.btfId,
    pids: holders.maps.get(m.id) ?? [],
  }));
  if (a.json) {
    await write(JSON.stringify(jsonSafe(rows)) + '\n');
    return 0;
  }
  await write(table([
    ['ID', 'TYPE', 'NAME', 'KEY', 'VALUE', 'MAX ENTRIES', 'FLAGS', 'BTF', 'PIDS'],
    ...rows.map((r) => [String(r.id), r.type, r.name || '-', `${r.keySize}B`, `${r.valueSize}B`, String(r.maxEntries), `0x${r.flags.toString(16)}`, r.btfId ? String(r.btfId) : '-', pidsText(r.pids)]),
  ]) + '\n');
  return 0;
}
