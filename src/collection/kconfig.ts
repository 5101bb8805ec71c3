// `.kconfig` externs: how their C types map to the values a kernel config
// gives (tristate enum, bool, char, integers, char arrays), where the config
// comes from (/proc/config.gz, /boot/config-<release>, or a file the caller
// names), and the virtual LINUX_* values the loader computes itself.

import { readFileSync } from 'node:fs';
import { release, version } from 'node:os';
import { gunzipSync } from 'node:zlib';
import type { Btf } from '../btf/btf.js';
import { TsbpfError } from '../errors.js';

/** An extern (`.kconfig` or `.ksyms`) that cannot be resolved or is declared in a way tsbpf cannot serve. */
export class ExternError extends TsbpfError {
  /** Name of the extern. */
  readonly extern: string;
  constructor(extern: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.extern = extern;
  }
}

/**
 * How a `.kconfig` extern stores its value, decided by its C type:
 * `enum libbpf_tristate` (0 n, 1 y, 2 m), `bool`, `char` (the letter or a byte), an integer of 1/2/4/8 bytes,
 * or a char array (a string, NUL-terminated, truncated to fit).
 */
export type KconfigKind = 'tristate' | 'bool' | 'char' | 'int' | 'string';

/** What the value encoder needs to know about one `.kconfig` extern. */
export interface KconfigSlot {
  name: string;
  kind: KconfigKind;
  size: number;
  signed: boolean;
}

/** A value from a config file (its text after `=`), or given by the caller. */
export type KconfigValue = string | number | bigint | boolean;

const TRISTATE = { n: 0, y: 1, m: 2 } as const;

/**
 * Kind of a `.kconfig` extern of BTF type `typeId`, or undefined when the type cannot hold a config value.
 * Typedefs and qualifiers are looked through; `signed` is set for signed integers.
 */
export function kconfigKind(btf: Btf, typeId: number): { kind: KconfigKind; signed: boolean } | undefined {
  const t = btf.resolve(typeId);
  switch (t.kind) {
    case 'int':
      if (t.bool) return t.size === 1 ? { kind: 'bool', signed: false } : undefined;
      if (t.size === 1) return { kind: 'char', signed: t.signed };
      if (t.size === 2 || t.size === 4 || t.size === 8) return { kind: 'int', signed: t.signed };
      return undefined;
    case 'enum':
    case 'enum64':
      // Only libbpf's tristate enum has a defined meaning for y/n/m.
      if (t.name !== 'libbpf_tristate') return undefined;
      if (t.kind === 'enum' && t.size !== 4) return undefined;
      return { kind: 'tristate', signed: false };
    case 'array': {
      if (t.nelems === 0) return undefined;
      const elem = kconfigKind(btf, t.type);
      return elem?.kind === 'char' ? { kind: 'string', signed: false } : undefined;
    }
    default:
      return undefined;
  }
}

/** The C spelling of a kind, for messages. */
function kindText(s: KconfigSlot): string {
  switch (s.kind) {
    case 'tristate':
      return 'enum libbpf_tristate';
    case 'bool':
      return 'bool';
    case 'char':
      return 'char';
    case 'int':
      return `${s.signed ? '' : 'unsigned '}${s.size * 8}-bit integer`;
    case 'string':
      return `char[${s.size}]`;
  }
}

/**
 * Parses an integer the way a config file writes one (and C's strtoull with base 0 reads it): decimal,
 * 0x-prefixed hex or 0-prefixed octal, with an optional sign. Negative values wrap to their 64-bit
 * two's complement. Returns undefined for anything else.
 */
export function parseConfigInteger(text: string): bigint | undefined {
  const m = /^\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) return undefined;
  const digits = m[2];
  let v: bigint;
  if (/^0[xX]/.test(digits)) v = BigInt(digits);
  else if (digits.length > 1 && digits[0] === '0') v = BigInt('0o' + digits.slice(1));
  else v = BigInt(digits);
  if (v >= 1n << 64n) return undefined;
  return BigInt.asUintN(64, m[1] === '-' ? -v : v);
}

/** Whether the 64-bit pattern `v` fits a `size`-byte integer (two's complement when signed) without loss. */
function fits(v: bigint, size: number, signed: boolean): boolean {
  if (size >= 8) return true;
  const bits = BigInt(size * 8);
  if (signed) return BigInt.asUintN(64, v + (1n << (bits - 1n))) < 1n << bits;
  return v >> bits === 0n;
}

function writeNumber(out: Buffer, off: number, size: number, v: bigint): void {
  for (let i = 0; i < size; i++) out[off + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/** Undoes Kconfig's escaping inside a quoted string (`\"` and `\\`). */
function unescape(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

/**
 * Writes the value of `slot` at `off` in `out`. `value` is a config file value (`y`, `"text"`, `0x10`, ...)
 * or a value given from JavaScript. `source` names where it came from, for errors. With `fromOptions`
 * (a caller's override), an unquoted string for a char array is taken as the text itself.
 * Throws ExternError when the value does not suit the extern's type.
 */
export function encodeKconfig(
  slot: KconfigSlot,
  value: KconfigValue,
  out: Buffer,
  off: number,
  source: string,
  fromOptions = false,
): void {
  const fail = (why: string): never => {
    throw new ExternError(slot.name, `extern ${slot.name} (${kindText(slot)}): ${why} (from ${source})`);
  };
  // JavaScript values first: booleans are y/n; numbers and bigints are integers.
  if (typeof value === 'boolean') {
    if (slot.kind === 'int') return writeNumber(out, off, slot.size, value ? 1n : 0n);
    value = value ? 'y' : 'n';
  }
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) fail(`${value} is not an integer`);
    value = BigInt(value);
  }
  if (typeof value === 'bigint') {
    if (value < -(1n << 63n) || value >= 1n << 64n) fail(`${value} does not fit 64 bits`);
    return encodeNumber(slot, BigInt.asUintN(64, value), out, off, fail, fromOptions);
  }
  if (typeof value !== 'string') fail(`unsupported value of type ${typeof value}`);

  if (value === 'y' || value === 'n' || value === 'm') {
    switch (slot.kind) {
      case 'bool':
        if (value === 'm') fail(`value m needs a tristate or char extern, not bool`);
        out[off] = value === 'y' ? 1 : 0;
        return;
      case 'tristate':
        writeNumber(out, off, 4, BigInt(TRISTATE[value]));
        return;
      case 'char':
        out[off] = value.charCodeAt(0);
        return;
      default:
        fail(`value ${value} needs a bool, tristate or char extern`);
    }
  }
  if (value.startsWith('"')) {
    if (slot.kind !== 'string') fail(`a string value needs a char array extern`);
    if (value.length < 2 || !value.endsWith('"')) fail(`malformed string ${value}`);
    return writeString(slot, unescape(value.slice(1, -1)), out, off);
  }
  const n = parseConfigInteger(value);
  if (n !== undefined) {
    if (slot.kind !== 'int' && slot.kind !== 'char') fail(`integer ${value} needs an integer or char extern`);
    return encodeNumber(slot, n, out, off, fail, false);
  }
  // An unquoted string from JavaScript for a char array is taken as the text itself.
  if (slot.kind === 'string' && fromOptions) return writeString(slot, value, out, off);
  return fail(`cannot parse value ${JSON.stringify(value)}`);
}

function encodeNumber(
  slot: KconfigSlot,
  v: bigint,
  out: Buffer,
  off: number,
  fail: (why: string) => never,
  fromJs: boolean,
): void {
  switch (slot.kind) {
    case 'bool':
      if (v > 1n) fail(`${v} is not a boolean (0 or 1)`);
      break;
    case 'tristate':
      // Config files never give numbers for tristates; JavaScript callers may pass 0/1/2.
      if (!fromJs || v > 2n) fail(`${v} is not a tristate (0 n, 1 y, 2 m)`);
      break;
    case 'string':
      fail(`an integer needs an integer or char extern, not a char array`);
      break;
    default:
      if (!fits(v, slot.size, slot.signed)) {
        const shown = slot.signed ? BigInt.asIntN(64, v) : v;
        fail(`${shown} does not fit in ${slot.size} byte${slot.size > 1 ? 's' : ''}`);
      }
  }
  writeNumber(out, off, slot.kind === 'tristate' ? 4 : slot.size, v);
}

function writeString(slot: KconfigSlot, text: string, out: Buffer, off: number): void {
  const bytes = Buffer.from(text, 'utf8');
  const n = Math.min(bytes.length, slot.size - 1);
  bytes.copy(out, off, 0, n);
  out.fill(0, off + n, off + slot.size);
}

// ---------------------------------------------------------------------------
// Config files

/** The config files tried when the caller names none, in order. */
export function defaultKconfigPaths(): string[] {
  return ['/proc/config.gz', `/boot/config-${release()}`];
}

export interface KconfigText {
  /** The file read. */
  path: string;
  /** Its text (gunzipped when it was compressed). */
  text: string;
}

/**
 * Reads the first of `paths` that exists (gzip or plain text). Returns undefined, with the reasons in
 * `tried`, when none can be read.
 */
export function readKconfigFile(paths: string[], tried: string[] = []): KconfigText | undefined {
  for (const path of paths) {
    let data: Buffer;
    try {
      data = readFileSync(path);
    } catch (e) {
      const code = (e as { code?: string }).code ?? (e as Error).message;
      tried.push(`${path}: ${code}`);
      continue;
    }
    if (data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b) {
      try {
        data = gunzipSync(data);
      } catch (e) {
        throw new TsbpfError(`kernel config ${path} is not valid gzip: ${(e as Error).message}`, { cause: e });
      }
    }
    return { path, text: data.toString('utf8') };
  }
  return undefined;
}

/**
 * The `CONFIG_*=value` assignments of a config file's text for the names in `wanted` (first one wins,
 * as in the kernel's own parser). `# CONFIG_X is not set` lines set nothing.
 */
export function parseKconfig(text: string, wanted: ReadonlySet<string>): Map<string, string> {
  const found = new Map<string, string>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (!line.startsWith('CONFIG_')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const name = line.slice(0, eq);
    if (!wanted.has(name) || found.has(name)) continue;
    found.set(name, line.slice(eq + 1));
  }
  return found;
}

// ---------------------------------------------------------------------------
// LINUX_KERNEL_VERSION

/** KERNEL_VERSION(a, b, c) as the kernel's <linux/version.h> packs it (the patch level saturates at 255). */
export function kernelVersionCode(major: number, minor: number, patch: number): number {
  return ((major << 16) + (minor << 8) + Math.min(patch, 255)) >>> 0;
}

/**
 * The running kernel's LINUX_VERSION_CODE, as libbpf computes it: Ubuntu's /proc/version_signature
 * (whose last field is the upstream version), else the "Debian a.b.c" of `uname -v`, else the
 * `a.b.c` at the start of `uname -r`. 0 when none of them parses.
 */
export function runningKernelVersion(
  sources: { release?: string; version?: string; versionSignature?: string | null } = {},
): number {
  let signature = sources.versionSignature;
  if (signature === undefined) {
    try {
      signature = readFileSync('/proc/version_signature', 'utf8');
    } catch {
      signature = null;
    }
  }
  if (signature) {
    // "Ubuntu 5.4.0-12.15-generic 5.4.8"
    const m = /^\S+\s+\S+\s+(\d+)\.(\d+)\.(\d+)/.exec(signature);
    if (m) return kernelVersionCode(+m[1], +m[2], +m[3]);
  }
  const ver = sources.version ?? version();
  const deb = /Debian (\d+)\.(\d+)\.(\d+)/.exec(ver);
  if (deb) return kernelVersionCode(+deb[1], +deb[2], +deb[3]);
  const rel = /^(\d+)\.(\d+)\.(\d+)/.exec(sources.release ?? release());
  if (rel) return kernelVersionCode(+rel[1], +rel[2], +rel[3]);
  return 0;
}
