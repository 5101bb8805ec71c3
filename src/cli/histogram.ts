// Log2 histograms: the classic ASCII rendering (as runqlat, biolatency and friends print them) and the maps
// that hold them. A map holds histograms when its BTF value is a struct whose first member is `u32 slots[N]`
// (`__u32`, `unsigned int`, any 4-byte unsigned integer), optionally with a `char comm[]` member. A client of
// the public API only.

import { MapType, type BpfMap, type Btf, type BtfType } from '../index.js';

/** Width of the bar between the `|` marks. */
const BAR = 40;

/**
 * The classic log2 histogram: slot k counts values in 2^k .. 2^(k+1)-1 (slot 0: 0 and 1). Leading empty slots
 * are skipped and printing stops after the last non-empty one; the bar is scaled to the largest count. An
 * all-zero histogram prints the header only.
 *
 *      usecs               : count    distribution
 *          0 -> 1          : 1514     |****************************************|
 */
export function formatLog2Hist(slots: ArrayLike<number | bigint>, unit: string): string {
  const counts = Array.from(slots, (c) => BigInt(c));
  const first = counts.findIndex((c) => c > 0n);
  let last = counts.length - 1;
  while (last >= 0 && counts[last] === 0n) last--;
  // Wide ranges (past 2^32) get wider columns, as the classic tools do.
  const wide = last >= 32;
  const numW = wide ? 20 : 10;
  const labelPad = wide ? 15 : 5;
  const labelW = wide ? 29 : 19;
  const lines = [`${' '.repeat(labelPad)}${unit.padEnd(labelW)} : count    distribution`];
  if (first < 0) return lines.join('\n');
  let max = 0n;
  for (const c of counts) if (c > max) max = c;
  for (let i = first; i <= last; i++) {
    const low = i === 0 ? 0n : 1n << BigInt(i);
    const high = (1n << BigInt(i + 1)) - 1n;
    const c = counts[i]!;
    const stars = Number((c * BigInt(BAR)) / max);
    lines.push(`${String(low).padStart(numW)} -> ${String(high).padEnd(numW)} : ${String(c).padEnd(8)} |${'*'.repeat(stars)}${' '.repeat(BAR - stars)}|`);
  }
  return lines.join('\n');
}

/** Where the slots and the comm are in a histogram map's value. */
export interface HistLayout {
  nslots: number;
  /** Byte offset of slots[0] (0: the first member) and of comm; commLen 0 when there is none. */
  slotsOffset: number;
  commOffset: number;
  commLen: number;
}

const QUALIFIERS = new Set(['const', 'volatile', 'restrict', 'type_tag']);

function strip(btf: Btf, id: number): BtfType {
  let t = btf.type(id);
  for (let hops = 0; (QUALIFIERS.has(t.kind) || t.kind === 'typedef') && hops < 64; hops++) t = btf.type((t as { type: number }).type);
  return t;
}

/** The layout when `valueType` (in `btf`) is a log2 histogram value, else undefined. */
export function histLayout(btf: Btf, valueType: number): HistLayout | undefined {
  const s = strip(btf, valueType);
  if (s.kind !== 'struct' || s.members.length === 0) return undefined;
  const m0 = s.members[0]!;
  if (m0.name !== 'slots' || m0.bitfieldSize) return undefined;
  const arr = strip(btf, m0.type);
  if (arr.kind !== 'array' || arr.nelems === 0) return undefined;
  const elem = strip(btf, arr.type);
  if (elem.kind !== 'int' || elem.size !== 4 || elem.signed || elem.bool) return undefined;
  const layout: HistLayout = { nslots: arr.nelems, slotsOffset: m0.bitOffset / 8, commOffset: 0, commLen: 0 };
  const comm = s.members.find((m) => m.name === 'comm');
  if (comm) {
    const ca = strip(btf, comm.type);
    if (ca.kind === 'array' && strip(btf, ca.type).kind === 'int' && btf.sizeof(ca.type) === 1) {
      layout.commOffset = comm.bitOffset / 8;
      layout.commLen = ca.nelems;
    }
  }
  return layout;
}

/** The layout of a loaded map's values, when the map holds histograms (array or hash, with BTF types). */
export function mapHistLayout(m: BpfMap, valueType: number | undefined): HistLayout | undefined {
  if (!m.btf || !valueType) return undefined;
  const kinds: number[] = [MapType.HASH, MapType.ARRAY, MapType.LRU_HASH];
  if (!kinds.includes(m.type)) return undefined;
  return histLayout(m.btf, valueType);
}

export interface HistEntry {
  key: Buffer;
  slots: number[];
  total: number;
  comm: string;
}

function cstr(b: Buffer, off: number, len: number): string {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  // eslint-disable-next-line no-control-regex
  return b.toString('utf8', off, end).replace(/[\x00-\x1f\x7f]/g, '.');
}

/** Decode one value. */
export function readHist(layout: HistLayout, key: Buffer, v: Buffer): HistEntry {
  const slots: number[] = [];
  for (let i = 0; i < layout.nslots; i++) slots.push(v.readUInt32LE(layout.slotsOffset + 4 * i));
  return { key, slots, total: slots.reduce((a, c) => a + c, 0), comm: layout.commLen ? cstr(v, layout.commOffset, layout.commLen) : '' };
}

/** Every non-empty histogram of the map, in key order (numeric keys of 4 or 8 bytes sorted as numbers). */
export function readHists(m: BpfMap, layout: HistLayout): HistEntry[] {
  const out: HistEntry[] = [];
  for (const [k, v] of m.entries()) {
    const h = readHist(layout, k, v as Buffer);
    if (h.total > 0) out.push(h);
  }
  const num = (k: Buffer): bigint => (k.length === 4 ? BigInt(k.readUInt32LE(0)) : k.length === 8 ? k.readBigUInt64LE(0) : 0n);
  out.sort((a, b) => (num(a.key) < num(b.key) ? -1 : num(a.key) > num(b.key) ? 1 : Buffer.compare(a.key, b.key)));
  return out;
}

/**
 * Empty the map after printing: hash maps lose the keys printed (the program re-creates them), arrays get
 * their slots zeroed (arrays cannot delete).
 */
export function clearHists(m: BpfMap, printed: HistEntry[]): void {
  if (m.type === MapType.ARRAY) {
    const zero = Buffer.alloc(m.valueSize);
    for (const h of printed) m.update(h.key, zero);
    return;
  }
  for (const h of printed) m.delete(h.key);
}

/** A key as a header value: an unsigned number for keys of 1, 2, 4 or 8 bytes, else hex. */
export function keyText(k: Buffer): string {
  switch (k.length) {
    case 1:
      return String(k[0]);
    case 2:
      return String(k.readUInt16LE(0));
    case 4:
      return String(k.readUInt32LE(0));
    case 8:
      return String(k.readBigUInt64LE(0));
    default:
      return '0x' + k.toString('hex');
  }
}

/**
 * Histograms of one map as text: one per key. When there is more than one, or the value carries a comm, each
 * is headed `LABEL = KEY COMM` (e.g. `pid = 1451 sshd`). Lines begin with a blank line per histogram, as the
 * classic tools print them.
 */
export function formatHists(hists: HistEntry[], unit: string, keyLabel: string, forceHeader = false): string {
  const parts: string[] = [];
  const header = forceHeader || hists.length > 1 || hists.some((h) => h.comm !== '');
  for (const h of hists) {
    let s = '';
    if (header) s += `\n${keyLabel} = ${keyText(h.key)}${h.comm ? ' ' + h.comm : ''}\n`;
    s += formatLog2Hist(h.slots, unit);
    parts.push(s);
  }
  return parts.join('\n');
}
