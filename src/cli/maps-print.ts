// `tsbpf load --attach`, on exit: the contents of the object's plain maps (hash, array, LRU, LPM trie and
// their per-CPU kinds) as KEY / VALUE tables, and the writable globals, decoded through BTF when they declare their
// types, else in hex. A client of the public API only.

import { codecFor, MapType, type BpfMap, type Btf, type Collection } from '../index.js';

/** Map types whose entries can be listed from user space and mean something as a table. */
const TABULAR = new Set<number>([
  MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
  MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE,
]);

/** Rows printed per map at most. */
export const MAX_ROWS = 100;

export function isTabular(type: number): boolean {
  return TABULAR.has(type);
}

/** A decoded value as compact text: numbers plain, strings as they are, the rest as JSON (bytes in hex). */
export function valueText(v: unknown): string {
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  // eslint-disable-next-line no-control-regex
  if (typeof v === 'string') return v.replace(/[\x00-\x1f\x7f]/g, '.');
  return JSON.stringify(v, (_k, x: unknown) => {
    if (typeof x === 'bigint') return x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString();
    if (x instanceof Uint8Array) return Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('hex');
    if (x !== null && typeof x === 'object' && (x as { type?: string }).type === 'Buffer' && Array.isArray((x as { data?: unknown }).data)) {
      return Buffer.from((x as { data: number[] }).data).toString('hex');
    }
    return x;
  });
}

const hex = (b: Buffer): string => b.toString('hex');
const isZero = (b: Buffer): boolean => b.every((x) => x === 0);

/**
 * The map's entries as text lines: a `NAME (type, N entries)` heading, then KEY / VALUE rows (per-CPU values
 * as one list, CPU by CPU). Arrays leave out their all-zero entries (saying how many), every map stops after
 * MAX_ROWS rows. `align`: pad the key column (a terminal); else one space between key and value.
 */
export function formatMap(m: BpfMap, kind: string, align: boolean): string {
  const { key: kc, value: vc } = m.codecs;
  const rows: [string, string][] = [];
  let total = 0;
  let zeros = 0;
  const isArray = m.type === MapType.ARRAY || m.type === MapType.PERCPU_ARRAY;
  for (const [k, v] of m.entries()) {
    const vals = Array.isArray(v) ? v : [v];
    if (isArray && vals.every(isZero)) {
      zeros++;
      continue;
    }
    total++;
    if (rows.length >= MAX_ROWS) continue;
    const keyText = kc ? valueText(kc.decode(k)) : hex(k);
    const dec = (b: Buffer): unknown => (vc ? vc.decode(b) : hex(b));
    const valText = Array.isArray(v) ? valueText(v.map(dec)) : vc ? valueText(dec(v)) : hex(v);
    rows.push([keyText, valText]);
  }
  const lines = [`${m.name} (${kind}, ${total} entr${total === 1 ? 'y' : 'ies'}${zeros ? `, ${zeros} all-zero not shown` : ''})`];
  if (rows.length) {
    const w = align ? Math.max(3, ...rows.map((r) => r[0].length)) : 0;
    lines.push(align ? `  ${'KEY'.padEnd(w)}  VALUE` : '  KEY VALUE');
    for (const [k, v] of rows) lines.push(align ? `  ${k.padEnd(w)}  ${v}` : `  ${k} ${v}`);
  }
  if (total > rows.length) lines.push(`  ... ${total - rows.length} more (first ${MAX_ROWS} shown)`);
  return lines.join('\n');
}

/**
 * The writable globals (.data, .bss and their named kinds) as they are now, decoded through the object's
 * BTF: what counters and results an object keeps in plain variables instead of maps. Read-only (.rodata)
 * variables are left out: they hold what the command line set. Undefined when the object has none.
 */
export function formatGlobals(coll: Collection, btf: Btf | undefined, align: boolean): string | undefined {
  const rows: [string, string][] = [];
  for (const v of Object.values(coll.variables)) {
    if (v.readonly) continue;
    const bytes = v.get();
    let text: string;
    try {
      text = btf && v.type ? valueText(codecFor(btf, v.type).decode(bytes, 0, { enumNames: true })) : hex(bytes);
    } catch {
      text = hex(bytes);
    }
    rows.push([v.name, text]);
  }
  if (!rows.length) return undefined;
  const w = align ? Math.max(4, ...rows.map((r) => r[0].length)) : 0;
  const lines = [`globals (${rows.length} writable variable${rows.length === 1 ? '' : 's'})`];
  lines.push(align ? `  ${'NAME'.padEnd(w)}  VALUE` : '  NAME VALUE');
  for (const [n, t] of rows) lines.push(align ? `  ${n.padEnd(w)}  ${t}` : `  ${n} ${t}`);
  return lines.join('\n');
}
