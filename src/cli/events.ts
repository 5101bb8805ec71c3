// `tsbpf load --attach`: stream the records of every RINGBUF and PERF_EVENT_ARRAY map, decoded through the
// object's BTF, one line per record (an aligned table, or JSON lines with --json). A client of the public
// API only.

import {
  codecFor, MapType, PerfReader, RingBufReader, TsbpfError,
  type BpfMap, type Btf, type BtfMember, type BtfType, type Codec, type Collection, type CollectionSpec,
} from '../index.js';

/** Records handled per drain before yielding to the event loop (so signals and I/O get a turn). */
const BATCH = 4096;
/** Data pages per CPU of each perf ring (256 KiB with 4 KiB pages): room for bursts while we print. */
const PERF_PAGES = 64;

interface Column {
  header: string;
  /** Key in the decoded object. */
  key: string;
  width: number;
  right: boolean;
  format(v: unknown): string;
}

/** How the records of one map are printed. */
interface Layout {
  map: string;
  codec: Codec | undefined;
  /** The struct's name, for messages. */
  typeName: string;
  columns: Column[];
}

export interface EventStreamOptions {
  /** `--event MAP=TYPE`, already parsed: map name → BTF struct name. */
  events: Record<string, string>;
  json: boolean;
  /** Writes to stdout (a whole batch of lines at once). */
  write(s: string): void;
  /** Writes a line to stderr. */
  warn(s: string): void;
}

/** Is `type` a map whose records we stream? */
export function isEventMapType(type: number): boolean {
  return type === MapType.RINGBUF || type === MapType.PERF_EVENT_ARRAY;
}

/** Parse `--event MAP=TYPE` arguments and check them against the spec (before anything is loaded). */
export function parseEventArgs(args: string[] | undefined, spec: CollectionSpec): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args ?? []) {
    const eq = a.indexOf('=');
    if (eq <= 0 || eq === a.length - 1) throw new TsbpfError(`--event wants MAP=TYPE, got "${a}"`);
    const map = a.slice(0, eq);
    const type = a.slice(eq + 1).replace(/^struct\s+/, '');
    const ms = spec.maps[map];
    if (!ms) throw new TsbpfError(`--event ${a}: the object has no map "${map}"`);
    if (!isEventMapType(ms.type)) throw new TsbpfError(`--event ${a}: map "${map}" is not a ring buffer or perf event array`);
    if (!spec.btf) throw new TsbpfError(`--event ${a}: the object has no BTF`);
    if (findStruct(spec.btf, type) === undefined) throw new TsbpfError(`--event ${a}: no struct "${type}" in the object's BTF`);
    out[map] = type;
  }
  return out;
}

/** The struct or union (possibly through a typedef) named `name`. */
function findStruct(btf: Btf, name: string): BtfType | undefined {
  for (const t of btf.typesByName(name)) {
    const r = btf.resolve(t.id);
    if (r.kind === 'struct' || r.kind === 'union') return t;
  }
  return undefined;
}

// ---- values → text ------------------------------------------------------------------------------

/** A decoded value made JSON-safe: bigint → number when safe, else string; bytes → hex. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}

// Control characters would break the one-line-per-record promise.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/g;
const text = (s: string): string => s.replace(CONTROL, '.');
const compact = (v: unknown): string => (typeof v === 'string' ? text(v) : JSON.stringify(plain(v)));

/** Decimal digits of the widest value of an integer of `bits` bits. */
function intWidth(bits: number, signed: boolean): number {
  const b = BigInt(Math.max(1, bits));
  return signed ? (-(1n << (b - 1n))).toString().length : ((1n << b) - 1n).toString().length;
}

const QUALIFIERS = new Set(['const', 'volatile', 'restrict', 'type_tag']);
const CHAR_NAMES = new Set(['char', 'signed char', 'unsigned char']);

/** The codec's rule for char arrays (decoded as strings): qualifiers followed, typedefs not. */
function isCharElem(btf: Btf, id: number): boolean {
  let t = btf.type(id);
  for (let hops = 0; QUALIFIERS.has(t.kind) && hops < 64; hops++) t = btf.type((t as { type: number }).type);
  return t.kind === 'int' && t.size === 1 && t.bits === 8 && !t.bool && (t.char || CHAR_NAMES.has(t.name));
}

function column(btf: Btf, m: BtfMember): Column {
  const header = m.name.toUpperCase();
  const t = btf.resolve(m.type);
  const col = (natural: number, right: boolean, format: (v: unknown) => string): Column => ({
    header, key: m.name, width: Math.max(header.length, natural), right, format,
  });
  switch (t.kind) {
    case 'int':
      if (t.bool) return col(5, false, String);
      return col(intWidth(m.bitfieldSize || t.bits, t.signed), true, String);
    case 'enum':
    case 'enum64':
      return col(intWidth(m.bitfieldSize || t.size * 8, t.signed), true, String);
    case 'ptr':
      return col(18, true, (v) => (typeof v === 'bigint' ? '0x' + v.toString(16) : compact(v)));
    case 'float':
      return col(12, true, (v) => (typeof v === 'number' ? String(v) : compact(v)));
    case 'array':
      if (isCharElem(btf, t.type)) return col(Math.max(0, t.nelems - 1), false, compact);
      return col(0, false, compact);
    default:
      return col(0, false, compact);
  }
}

/** One column per member; anonymous struct/union members are flattened as the codec does. */
function columnsOf(btf: Btf, members: BtfMember[], out: Column[] = []): Column[] {
  for (const m of members) {
    if (m.name === '') {
      const t = btf.resolve(m.type);
      if (t.kind === 'struct' || t.kind === 'union') columnsOf(btf, t.members, out);
      continue;
    }
    out.push(column(btf, m));
  }
  return out;
}

function layoutFor(spec: CollectionSpec, map: string, explicit: string | undefined): Layout {
  const btf = spec.btf;
  const t = btf && (explicit !== undefined ? findStruct(btf, explicit) : btf.tryFindType('event', 'struct'));
  if (!btf || !t) {
    return { map, codec: undefined, typeName: '', columns: [{ header: 'DATA', key: '', width: 0, right: false, format: String }] };
  }
  const r = btf.resolve(t.id) as Extract<BtfType, { kind: 'struct' | 'union' }>;
  return { map, codec: codecFor(btf, t.id), typeName: `${r.kind} ${t.name}`, columns: columnsOf(btf, r.members) };
}

// ---- the stream ---------------------------------------------------------------------------------

/** HH:MM:SS, local time, recomputed once a second. */
class Clock {
  #sec = -1;
  #text = '';
  now(): string {
    const ms = Date.now();
    const sec = Math.floor(ms / 1000);
    if (sec !== this.#sec) {
      this.#sec = sec;
      this.#text = new Date(ms).toTimeString().slice(0, 8);
    }
    return this.#text;
  }
}

interface PerfSource {
  map: string;
  reader: PerfReader;
  /** Lost counts as last reported. */
  lost: number;
  lostPerCpu: Record<number, number>;
}

interface Pollable {
  readonly closed: boolean;
  wait(): Promise<void>;
  close(): void;
}

/**
 * Readers over the event maps of a collection and the printing of their records. Open it before attaching
 * (so nothing produced at attach time is lost), `start()` after, `stop()` on the way out.
 */
export class EventStream {
  readonly #opts: EventStreamOptions;
  readonly #layouts = new Map<string, Layout>();
  readonly #maps: BpfMap[] = [];
  readonly #ringMaps: string[] = [];
  #ring: RingBufReader | undefined;
  readonly #perf: PerfSource[] = [];
  readonly #pumps: Promise<void>[] = [];
  readonly #clock = new Clock();
  readonly #showMap: boolean;
  readonly #mapWidth: number;
  #lines: string[] = [];
  /** A record shorter than its struct was seen (hex printed instead); warned once per map. */
  readonly #short = new Set<string>();

  constructor(coll: Collection, spec: CollectionSpec, opts: EventStreamOptions) {
    this.#opts = opts;
    for (const [name, m] of Object.entries(coll.maps)) {
      if (!isEventMapType(m.type)) continue;
      this.#maps.push(m);
      this.#layouts.set(name, layoutFor(spec, name, opts.events[name]));
    }
    this.#showMap = this.#maps.length > 1;
    this.#mapWidth = Math.max(3, ...this.#maps.map((m) => m.name.length));
    try {
      const rings = this.#maps.filter((m) => m.type === MapType.RINGBUF);
      if (rings.length) {
        this.#ring = new RingBufReader(rings);
        for (const m of rings) this.#ringMaps.push(m.name);
      }
      for (const m of this.#maps) {
        if (m.type !== MapType.PERF_EVENT_ARRAY) continue;
        this.#perf.push({ map: m.name, reader: new PerfReader(m, { pagesPerCpu: PERF_PAGES }), lost: 0, lostPerCpu: {} });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Names of the maps read, with the type their records are decoded as. */
  get sources(): { map: string; kind: 'ringbuf' | 'perf_event_array'; type: string }[] {
    return this.#maps.map((m) => ({
      map: m.name,
      kind: m.type === MapType.RINGBUF ? 'ringbuf' : 'perf_event_array',
      type: this.#layouts.get(m.name)!.typeName || 'raw bytes (hex)',
    }));
  }

  get empty(): boolean {
    return this.#maps.length === 0;
  }

  /** Header lines (one per distinct layout; none in JSON mode). */
  headers(): string[] {
    if (this.#opts.json) return [];
    const seen = new Set<string>();
    const out: string[] = [];
    for (const l of this.#layouts.values()) {
      const h = this.#row('TIME', l.map, l.columns.map((c) => c.header), l.columns, true);
      if (seen.has(h)) continue;
      seen.add(h);
      out.push(h);
    }
    return out;
  }

  /**
   * Start one wait loop per reader. `onError` gets a failure of a loop (the stream stops reading then).
   * Each loop drains, then waits; close() resolves its pending wait.
   */
  start(onError: (e: unknown) => void): void {
    const loop = async (reader: Pollable, drain: () => number): Promise<void> => {
      while (!reader.closed) {
        const n = drain();
        this.#flush();
        if (reader.closed) break;
        if (n >= BATCH) {
          await new Promise<void>((r) => setImmediate(r));
          continue;
        }
        await reader.wait();
      }
    };
    const guard = (p: Promise<void>) => p.catch((e: unknown) => {
      this.#flush();
      onError(e);
    });
    if (this.#ring) this.#pumps.push(guard(loop(this.#ring, () => this.#drainRing())));
    for (const p of this.#perf) this.#pumps.push(guard(loop(p.reader, () => this.#drainPerf(p))));
  }

  /** Read what is left (call after detaching), close every reader and wait for the loops to end. */
  async stop(): Promise<void> {
    try {
      if (this.#ring && !this.#ring.closed) this.#drainRing();
      for (const p of this.#perf) if (!p.reader.closed) this.#drainPerf(p);
    } finally {
      this.#flush();
      this.close();
    }
    await Promise.all(this.#pumps);
  }

  /** Idempotent; synchronous (pending waits resolve, loops end on their own). */
  close(): void {
    this.#ring?.close();
    for (const p of this.#perf) p.reader.close();
  }

  #drainRing(): number {
    const ring = this.#ring!;
    return ring.readInPlace((data, offset, length, index) => {
      this.#record(this.#ringMaps[index]!, data, offset, length);
    }, { max: BATCH });
  }

  #drainPerf(p: PerfSource): number {
    const n = p.reader.readInPlace((data, offset, length) => this.#record(p.map, data, offset, length), { max: BATCH });
    const lost = p.reader.lost;
    if (lost !== p.lost) {
      p.lost = lost;
      const per = p.reader.lostPerCpu;
      const suffix = this.#perf.length > 1 ? ` (map ${p.map})` : '';
      for (const [cpu, c] of Object.entries(per)) {
        const d = c - (p.lostPerCpu[Number(cpu)] ?? 0);
        if (d > 0) this.#opts.warn(`lost ${d} events on CPU ${cpu}${suffix}`);
      }
      p.lostPerCpu = per;
    }
    return n;
  }

  #record(map: string, data: Buffer, offset: number, length: number): void {
    const l = this.#layouts.get(map)!;
    const time = this.#clock.now();
    let value: Record<string, unknown> | undefined;
    if (l.codec && length >= l.codec.size) {
      try {
        value = l.codec.decode(data, offset) as Record<string, unknown>;
      } catch {
        value = undefined;
      }
    } else if (l.codec && !this.#short.has(map)) {
      this.#short.add(map);
      this.#opts.warn(`map "${map}": a ${length}-byte record is shorter than ${l.typeName} (${l.codec.size} bytes); printing raw bytes`);
    }
    if (this.#opts.json) {
      const fields = value ? (plain(value) as Record<string, unknown>) : { data: data.toString('hex', offset, offset + length) };
      this.#lines.push(JSON.stringify({ time, map, ...fields }));
      return;
    }
    if (!value) {
      this.#lines.push(this.#row(time, map, [data.toString('hex', offset, offset + length)], undefined, false));
      return;
    }
    const cells = l.columns.map((c) => c.format(value[c.key]));
    this.#lines.push(this.#row(time, map, cells, l.columns, false));
  }

  #row(time: string, map: string, cells: string[], columns: Column[] | undefined, header: boolean): string {
    let s = time.padEnd(8);
    if (this.#showMap) s += ' ' + (header ? 'MAP' : map).padEnd(this.#mapWidth);
    for (let i = 0; i < cells.length; i++) {
      const c = columns?.[i];
      const last = i === cells.length - 1;
      const cell = cells[i]!;
      s += ' ' + (!c ? cell : c.right ? cell.padStart(c.width) : last ? cell : cell.padEnd(c.width));
    }
    return s.trimEnd();
  }

  #flush(): void {
    if (this.#lines.length === 0) return;
    const out = this.#lines.join('\n') + '\n';
    this.#lines = [];
    this.#opts.write(out);
  }
}
