// Command-line flags generated from an object's global variables (.rodata/.data/.bss, typed from BTF), for
// `tsbpf load OBJ.o --min_us 200 --filter_cg ...`. A client of the public API only.
//
// Conventions:
//   integers, enums, floats   --NAME VALUE  or  --NAME=VALUE   (0x.. hex, negative numbers as --NAME=-1;
//                                                              enums also by enumerator name)
//   bool                      --NAME sets it true, --no-NAME sets it false (--NAME=true|false|1|0 too)
//   char arrays               --NAME STRING (UTF-8, at most N-1 bytes)
//   anything else (structs, other arrays) has no flag: use --set NAME=0xHEX... (raw bytes) from the API
// A global whose name is also one of tsbpf's own options keeps the option; set it with --set NAME=VALUE.

import { cTypeName } from '../btf/names.js';
import { codecFor, getVariable, setVariable, TsbpfError, type Btf, type CollectionSpec, type VariableSpec } from '../index.js';

/** A command-line misuse: printed with the usage text, exit code 2. */
export class UsageError extends TsbpfError {}

export type FlagKind = 'int' | 'bool' | 'enum' | 'float' | 'string';

export interface GlobalFlag {
  /** Variable name = flag name (without `--`). */
  name: string;
  kind: FlagKind;
  /** C type as declared, without const/volatile (e.g. `pid_t`, `__u64`, `char[16]`, `bool`). */
  cType: string;
  /** Data section (.rodata, .data, .bss, ...). */
  section: string;
  readonly: boolean;
  /** Default value as read from the object (the initializer), formatted. */
  defaultText: string;
}

function kindOf(btf: Btf, v: VariableSpec): FlagKind | undefined {
  const t = btf.resolve(v.type);
  switch (t.kind) {
    case 'int':
      return t.bool ? 'bool' : 'int';
    case 'enum':
    case 'enum64':
      return 'enum';
    case 'float':
      return 'float';
    case 'array': {
      const e = btf.resolve(t.type);
      return e.kind === 'int' && e.size === 1 ? 'string' : undefined;
    }
    default:
      return undefined;
  }
}

function sectionOf(spec: CollectionSpec, v: VariableSpec): string {
  return spec.maps[v.map]?.section ?? v.map;
}

/** Globals that get a flag: typed by BTF, in a data section, of a kind we can parse from text. */
export function globalFlags(spec: CollectionSpec): GlobalFlag[] {
  const btf = spec.btf;
  if (!btf) return [];
  const out: GlobalFlag[] = [];
  for (const v of Object.values(spec.variables)) {
    if (!v.type) continue;
    const section = sectionOf(spec, v);
    if (!/^\.(rodata|data|bss)/.test(section)) continue;
    const kind = kindOf(btf, v);
    if (!kind) continue;
    let defaultText = '?';
    try {
      const val = codecFor(btf, v.type).decode(getVariable(spec, v.name));
      defaultText = kind === 'string' ? JSON.stringify(val) : String(val);
    } catch {
      // no initial bytes (should not happen for data maps): leave '?'
    }
    out.push({ name: v.name, kind, cType: cTypeName(btf, v.type, { qualifiers: false }), section, readonly: v.readonly, defaultText });
  }
  return out;
}

/** parseArgs option descriptors for the flags (bools get a `no-NAME` twin), minus names taken by `reserved`. */
export function flagOptions(flags: GlobalFlag[], reserved: Set<string>): Record<string, { type: 'string' | 'boolean' }> {
  const o: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const f of flags) {
    if (reserved.has(f.name)) continue;
    if (f.kind === 'bool') {
      // A bool is a switch; `--NAME=true` is also accepted, so it is read as a string when a value is attached.
      o[f.name] = { type: 'boolean' };
      if (!reserved.has(`no-${f.name}`)) o[`no-${f.name}`] = { type: 'boolean' };
    } else {
      o[f.name] = { type: 'string' };
    }
  }
  return o;
}

const INT = /^[-+]?(0x[0-9a-f]+|0o[0-7]+|0b[01]+|\d+)$/i;

function parseInteger(text: string): bigint {
  const neg = text.startsWith('-');
  const body = text.replace(/^[-+]/, '');
  return neg ? -BigInt(body) : BigInt(body);
}

function parseBool(name: string, text: string): boolean {
  const s = text.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(s)) return true;
  if (['false', '0', 'no', 'off'].includes(s)) return false;
  throw new UsageError(`--${name} is a bool: use --${name} or --no-${name} (or --${name}=true|false), got "${text}"`);
}

/** The JS value a flag's text stands for, by the variable's type. */
export function parseFlagValue(f: GlobalFlag, text: string): bigint | boolean | number | string {
  switch (f.kind) {
    case 'bool':
      return parseBool(f.name, text);
    case 'int':
      if (!INT.test(text)) throw new UsageError(`--${f.name} wants an integer (${f.cType}), got "${text}"`);
      return parseInteger(text);
    case 'enum':
      return INT.test(text) ? parseInteger(text) : text;
    case 'float': {
      const n = Number(text);
      if (text.trim() === '' || Number.isNaN(n)) throw new UsageError(`--${f.name} wants a number (${f.cType}), got "${text}"`);
      return n;
    }
    case 'string':
      return text;
  }
}

/** setVariable with command-line wording for its range and type errors. */
export function setGlobal(spec: CollectionSpec, name: string, value: bigint | boolean | number | string, flag: string): void {
  try {
    setVariable(spec, name, value);
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw new UsageError(`${flag}: ${e.message}`);
    throw e;
  }
}

/**
 * Apply the generated flags found in parseArgs `values` to the spec, in command-line order as parseArgs keeps
 * the last one of each. Returns the names set.
 */
export function applyGlobalFlags(spec: CollectionSpec, flags: GlobalFlag[], values: Record<string, unknown>, reserved: Set<string>): string[] {
  const set: string[] = [];
  for (const f of flags) {
    if (reserved.has(f.name)) continue;
    const v = values[f.name];
    const neg = f.kind === 'bool' ? values[`no-${f.name}`] : undefined;
    if (v === undefined && neg === undefined) continue;
    if (f.kind === 'bool') {
      if (v !== undefined && neg !== undefined) throw new UsageError(`--${f.name} and --no-${f.name} both given`);
      setGlobal(spec, f.name, v !== undefined, `--${v !== undefined ? '' : 'no-'}${f.name}`);
    } else {
      setGlobal(spec, f.name, parseFlagValue(f, String(v)), `--${f.name}`);
    }
    set.push(f.name);
  }
  return set;
}

/**
 * Rewrite `--boolflag=VALUE` into `--boolflag` / `--no-boolflag` (parseArgs refuses a value on a boolean
 * option).
 */
export function normalizeBoolArgs(argv: string[], flags: GlobalFlag[], reserved: Set<string>): string[] {
  const bools = new Map(flags.filter((f) => f.kind === 'bool' && !reserved.has(f.name)).map((f) => [f.name, f]));
  const out: string[] = [];
  for (const a of argv) {
    if (a === '--') {
      out.push(...argv.slice(argv.indexOf(a)));
      break;
    }
    const m = /^--([^=]+)=(.*)$/s.exec(a);
    const f = m && bools.get(m[1]!);
    if (m && f) out.push(parseBool(f.name, m[2]!) ? `--${f.name}` : `--no-${f.name}`);
    else out.push(a);
  }
  return out;
}

/** The `--help` section listing an object's flags. */
export function globalsHelp(objectName: string, flags: GlobalFlag[], reserved: Set<string>): string {
  if (flags.length === 0) return `${objectName} has no global variables that take a flag.\n`;
  const rows = flags.map((f) => {
    const taken = reserved.has(f.name);
    const arg = f.kind === 'bool' ? `--${f.name}, --no-${f.name}` : `--${f.name} ${f.kind === 'string' ? 'STR' : f.kind === 'float' ? 'NUM' : f.kind === 'enum' ? 'NAME|N' : 'N'}`;
    return [taken ? `--set ${f.name}=VALUE` : arg, f.cType, `default ${f.defaultText}`, `${f.section}${taken ? ' (name taken by a tsbpf option)' : ''}`];
  });
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => `  ${r[0]!.padEnd(w[0]!)}  ${r[1]!.padEnd(w[1]!)}  ${r[2]!.padEnd(w[2]!)}  ${r[3]}`.trimEnd());
  return `Globals of ${objectName} (flags generated from its BTF; set before load, .rodata is constant to the program):
${lines.join('\n')}
`;
}
