// `tsbpf gen types OBJECT.o [-o OUT.ts] [--import-from PATH]`: TypeScript declarations for an object, the
// counterpart of bpf2go / `bpftool gen skeleton`: interfaces for the BTF types of map keys and values and
// of the object's record structs, typed maps, programs and globals, and a `load<Obj>()` that returns the
// loaded Collection with those types.
//
// JS types follow the BTF codec (src/btf/codec.ts): ints up to 4 bytes → number, 8/16 bytes → bigint,
// bool → boolean, char arrays → string, other arrays → T[], structs → interfaces (anonymous members
// flattened), unions → every member, enums → number (bigint for 8 bytes), pointers → bigint.

import { writeFileSync } from 'node:fs';
import { dirname, relative, resolve, basename } from 'node:path';
import { parseArgs } from 'node:util';
import { loadCollectionSpec } from '../elf/index.js';
import type { CollectionSpec } from '../elf/spec.js';
import type { Btf } from '../btf/btf.js';
import type { BtfMember, BtfType } from '../btf/types.js';
import { isPerCpu } from '../maps/map.js';

export const GEN_USAGE = `Usage: tsbpf gen types OBJECT.o [-o OUT.ts] [--import-from MODULE] [--name NAME]

Write TypeScript declarations for a BPF object: interfaces for the BTF types of its map keys and values
and record structs, typed maps, programs and globals, and load<Name>() returning a typed Collection.
  -o, --out FILE       write there (default: stdout); the object is then found relative to FILE
  --import-from MODULE where the generated code imports tsbpf from (default: tsbpf)
  --name NAME          name used in load<Name>() and the interface names (default: from the object)
`;

export interface GenTypesOptions {
  /** Module specifier of tsbpf in the generated imports (default 'tsbpf'). */
  importFrom?: string;
  /** PascalCase base name (default: the object name). */
  name?: string;
  /** How the generated module finds the object: a path relative to the module (default: the object's path as given). */
  objectPath?: string;
  /** true when objectPath is relative to the generated module (resolved through import.meta.url). */
  relativeToModule?: boolean;
}

function pascal(s: string): string {
  const p = s.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : '')).replace(/^./, (c) => c.toUpperCase());
  return /^[A-Za-z_$]/.test(p) ? p : `T${p}`;
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
function prop(name: string): string {
  return IDENT.test(name) ? name : JSON.stringify(name);
}

/** Skip typedefs and qualifiers. */
function strip(btf: Btf, id: number): BtfType {
  return btf.resolve(id);
}

/** Skips const/volatile/type_tag but not typedefs (the codec's rule for char arrays). */
function stripQual(btf: Btf, id: number): BtfType {
  let t = btf.type(id);
  for (let i = 0; i < 32 && (t.kind === 'const' || t.kind === 'volatile' || t.kind === 'restrict' || t.kind === 'type_tag'); i++) t = btf.type(t.type);
  return t;
}

function isCharArrayElem(btf: Btf, elem: number): boolean {
  const t = stripQual(btf, elem);
  if (t.kind === 'int') return t.size === 1 && (t.char || t.name === 'char' || t.name === 'signed char' || t.name === 'unsigned char');
  return false;
}

class TypeGen {
  readonly btf: Btf;
  /** Interface declarations, by struct type id. */
  readonly decls = new Map<number, string>();
  readonly names = new Map<number, string>();
  readonly used = new Set<string>();
  constructor(btf: Btf, reserved: string[]) {
    this.btf = btf;
    for (const r of reserved) this.used.add(r);
  }

  nameFor(t: BtfType & { name: string }): string {
    let n = this.names.get(t.id);
    if (n) return n;
    const base = pascal(t.name);
    n = base;
    for (let i = 2; this.used.has(n); i++) n = `${base}${i}`;
    this.used.add(n);
    this.names.set(t.id, n);
    return n;
  }

  /** The TS type of a value of BTF type `id`. */
  ts(id: number, depth = 0): string {
    if (depth > 24) return 'unknown';
    const t = strip(this.btf, id);
    switch (t.kind) {
      case 'int':
        if (t.bool) return 'boolean';
        if (t.size <= 4 && [1, 2, 4].includes(t.size)) return 'number';
        if (t.size === 8 || t.size === 16) return 'bigint';
        return 'Buffer';
      case 'enum':
        return t.size === 8 ? 'bigint' : 'number';
      case 'enum64':
        return t.size <= 4 ? 'number' : 'bigint';
      case 'float':
        return t.size === 4 || t.size === 8 ? 'number' : 'Buffer';
      case 'ptr':
        return 'bigint';
      case 'array': {
        if (isCharArrayElem(this.btf, t.type)) return 'string';
        const e = this.ts(t.type, depth + 1);
        return /[|&{ ]/.test(e) ? `Array<${e}>` : `${e}[]`;
      }
      case 'struct':
      case 'union':
        if (!t.name) return this.inline(t.members, depth);
        this.declare(t);
        return this.nameFor(t);
      case 'datasec':
        return 'Record<string, unknown>';
      default:
        return 'unknown';
    }
  }

  /** Member lines of a composite, anonymous struct/union members flattened as the codec does. */
  members(members: BtfMember[], depth: number, indent: string): string[] {
    const out: string[] = [];
    for (const m of members) {
      if (!m.name) {
        const inner = strip(this.btf, m.type);
        if (inner.kind === 'struct' || inner.kind === 'union') {
          out.push(...this.members(inner.members, depth + 1, indent));
          continue;
        }
        continue;
      }
      let ty: string;
      if (m.bitfieldSize) {
        const t = strip(this.btf, m.type);
        ty = (t.kind === 'int' || t.kind === 'enum' || t.kind === 'enum64') && t.size === 8 ? 'bigint' : t.kind === 'int' && t.bool ? 'boolean' : 'number';
      } else {
        ty = this.ts(m.type, depth + 1);
      }
      out.push(`${indent}${prop(m.name)}: ${ty};`);
    }
    return out;
  }

  inline(members: BtfMember[], depth: number): string {
    return `{ ${this.members(members, depth, '').join(' ')} }`;
  }

  declare(t: BtfType & { kind: 'struct' | 'union'; members: BtfMember[]; size: number }): void {
    if (this.decls.has(t.id)) return;
    const name = this.nameFor(t);
    this.decls.set(t.id, ''); // placeholder against recursion
    const body = this.members(t.members, 0, '  ');
    this.decls.set(t.id, `/** \`${t.kind} ${t.name}\` (${t.size} bytes). */\nexport interface ${name} {\n${body.join('\n')}\n}\n`);
  }
}

/** Record structs worth a declaration: what `const struct X *unused` globals name, and `struct event`. */
function recordStructs(spec: CollectionSpec): number[] {
  const btf = spec.btf!;
  const ids: number[] = [];
  for (const v of Object.values(spec.variables)) {
    if (!v.type) continue;
    const t = stripQual(btf, v.type);
    if (t.kind === 'ptr') {
      const p = strip(btf, t.type);
      if ((p.kind === 'struct' || p.kind === 'union') && p.name) ids.push(p.id);
    }
  }
  const ev = btf.tryFindType('event', 'struct');
  if (ev) ids.push(ev.id);
  return [...new Set(ids)];
}

/** The generated module's text. */
export function generateTypes(spec: CollectionSpec, objectPath: string, o: GenTypesOptions = {}): string {
  const Obj = o.name ? pascal(o.name) : pascal(spec.objectName);
  const from = o.importFrom ?? 'tsbpf';
  const btf = spec.btf;
  const reserved = [`${Obj}Maps`, `${Obj}Programs`, `${Obj}Variables`, `${Obj}Constants`, `${Obj}Objects`, `${Obj}LoadOptions`, 'TypedMap', 'TypedVariable',
    'Collection', 'BpfMap', 'Program', 'GlobalVariable', 'CollectionOptions', 'CollectionSpec', 'DecodeOptions', 'Buffer'];
  const gen = btf ? new TypeGen(btf, reserved) : undefined;
  const lines: string[] = [];
  lines.push(`// Generated by \`tsbpf gen types\` from ${basename(objectPath)}. Do not edit: run it again when the object changes.`);
  lines.push(`/* eslint-disable */`);
  lines.push(`import { fileURLToPath } from 'node:url';`);
  lines.push(`import { Collection, loadCollectionSpec, setVariable } from ${JSON.stringify(from)};`);
  lines.push(`import type { BpfMap, Program, GlobalVariable, CollectionOptions, CollectionSpec, DecodeOptions } from ${JSON.stringify(from)};`);
  lines.push('');
  // Map types.
  const mapLines: string[] = [];
  for (const m of Object.values(spec.maps)) {
    if (m.origin === 'data') continue;
    let k = 'Uint8Array';
    let v = 'Buffer';
    if (gen && m.keyType) k = gen.ts(m.keyType);
    if (gen && m.valueType) v = gen.ts(m.valueType);
    const typed = gen && (m.keyType || m.valueType);
    const value = isPerCpu(m.type) ? (/[|&{ ]/.test(v) ? `Array<${v}>` : `${v}[]`) : v;
    mapLines.push(`  /** ${m.name}: ${m.keySize}-byte key, ${m.valueSize}-byte value, ${m.maxEntries} entries. */`);
    mapLines.push(`  ${prop(m.name)}: ${typed ? `TypedMap<${k}, ${value}>` : 'BpfMap'};`);
  }
  // Variables.
  const varLines: string[] = [];
  const constLines: string[] = [];
  for (const v of Object.values(spec.variables)) {
    let ty = 'Buffer';
    if (btf && v.type) {
      const t = strip(btf, v.type);
      if (t.kind === 'int' && t.bool) ty = 'boolean';
      else if ((t.kind === 'int' || t.kind === 'enum' || t.kind === 'enum64') && [1, 2, 4].includes(t.size)) ty = 'number';
      else if ((t.kind === 'int' || t.kind === 'enum' || t.kind === 'enum64') && t.size === 8) ty = 'bigint';
    } else if ([1, 2, 4].includes(v.size)) ty = 'number';
    else if (v.size === 8) ty = 'bigint';
    varLines.push(`  ${prop(v.name)}: TypedVariable<${ty}>;`);
    if (v.readonly) {
      const setTy = ty === 'Buffer' ? (btf && v.type && gen!.ts(v.type) === 'string' ? 'string | Buffer' : 'Buffer') : `${ty}`;
      constLines.push(`  ${prop(v.name)}?: ${setTy};`);
    }
  }
  const structs = gen ? recordStructs(spec).map((id) => gen.ts(id)) : [];
  if (gen && gen.decls.size) {
    lines.push(...[...gen.decls.values()]);
  }
  lines.push(`/** A map whose get/set/decodedEntries speak the JS types of its BTF key and value. */`);
  lines.push(`export interface TypedMap<K, V> extends BpfMap {`);
  lines.push(`  get(key: K | Uint8Array, o?: DecodeOptions): V | undefined;`);
  lines.push(`  set(key: K | Uint8Array, value: V | Uint8Array, flags?: number): void;`);
  lines.push(`  decodedEntries(o?: DecodeOptions): Generator<[K, V]>;`);
  lines.push(`}`);
  lines.push('');
  lines.push(`/** A global variable with the JS type of its value. */`);
  lines.push(`export interface TypedVariable<T extends number | bigint | boolean | Buffer> extends GlobalVariable {`);
  lines.push(`  readonly value: T;`);
  lines.push(`}`);
  lines.push('');
  lines.push(`export interface ${Obj}Maps {`, ...mapLines, `}`, '');
  const progNames = Object.keys(spec.programs);
  lines.push(`export interface ${Obj}Programs {`, ...progNames.map((n) => `  ${prop(n)}: Program;`), `}`, '');
  lines.push(`export const ${Obj[0].toLowerCase() + Obj.slice(1)}ProgramNames = ${JSON.stringify(progNames)} as const;`, '');
  lines.push(`export interface ${Obj}Variables {`, ...varLines, `}`, '');
  lines.push(`/** Read-only globals (.rodata): set before load through load${Obj}({ constants }). */`);
  lines.push(`export interface ${Obj}Constants {`, ...constLines, `}`, '');
  if (structs.length) {
    lines.push(`/** Record types of the object (ring buffer / perf event records), for decode options and readers. */`);
    lines.push(`export type ${Obj}Records = ${structs.join(' | ')};`, '');
  }
  lines.push(`export interface ${Obj}LoadOptions extends CollectionOptions {`);
  lines.push(`  /** The object file (default: ${o.relativeToModule ? 'next to this module as at generation' : 'the path given at generation'}). */`);
  lines.push(`  object?: string;`);
  lines.push(`  /** Values of .rodata globals, set in the spec before load. */`);
  lines.push(`  constants?: ${Obj}Constants;`);
  lines.push(`}`, '');
  lines.push(`export interface ${Obj}Objects {`);
  lines.push(`  readonly collection: Collection;`);
  lines.push(`  readonly spec: CollectionSpec;`);
  lines.push(`  readonly maps: ${Obj}Maps;`);
  lines.push(`  readonly programs: ${Obj}Programs;`);
  lines.push(`  readonly variables: ${Obj}Variables;`);
  lines.push(`  close(): void;`);
  lines.push(`  [Symbol.dispose](): void;`);
  lines.push(`}`, '');
  const objExpr = o.relativeToModule
    ? `fileURLToPath(new URL(${JSON.stringify(o.objectPath ?? objectPath)}, import.meta.url))`
    : JSON.stringify(o.objectPath ?? objectPath);
  lines.push(`export const ${Obj[0].toLowerCase() + Obj.slice(1)}ObjectPath: string = ${objExpr};`, '');
  lines.push(`/** Load ${basename(objectPath)}: maps, programs and globals, typed. Close it (or \`using\`) when done. */`);
  lines.push(`export function load${Obj}(options: ${Obj}LoadOptions = {}): ${Obj}Objects {`);
  lines.push(`  const { object, constants, ...collectionOptions } = options;`);
  lines.push(`  const spec = loadCollectionSpec(object ?? ${Obj[0].toLowerCase() + Obj.slice(1)}ObjectPath);`);
  lines.push(`  for (const [name, value] of Object.entries(constants ?? {})) {`);
  lines.push(`    if (value !== undefined) setVariable(spec, name, value as Parameters<typeof setVariable>[2]);`);
  lines.push(`  }`);
  lines.push(`  const collection = new Collection(spec, collectionOptions);`);
  lines.push(`  return {`);
  lines.push(`    collection,`);
  lines.push(`    spec,`);
  lines.push(`    maps: collection.maps as unknown as ${Obj}Maps,`);
  lines.push(`    programs: collection.programs as unknown as ${Obj}Programs,`);
  lines.push(`    variables: collection.variables as unknown as ${Obj}Variables,`);
  lines.push(`    close: () => collection.close(),`);
  lines.push(`    [Symbol.dispose]: () => collection.close(),`);
  lines.push(`  };`);
  lines.push(`}`);
  // fileURLToPath is only needed for a module-relative object path.
  let text = lines.join('\n') + '\n';
  if (!o.relativeToModule) text = text.replace(`import { fileURLToPath } from 'node:url';\n`, '');
  return text;
}

export async function genCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help') {
    process.stdout.write(GEN_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'types') {
    process.stderr.write(`tsbpf gen: unknown subcommand "${sub}"\n\n${GEN_USAGE}`);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      'import-from': { type: 'string' },
      name: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(GEN_USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(GEN_USAGE);
    return 2;
  }
  const path = positionals[0];
  const spec = loadCollectionSpec(path);
  let objectPath = resolve(path);
  let relativeToModule = false;
  if (values.out) {
    let rel = relative(dirname(resolve(values.out)), resolve(path));
    if (!rel.startsWith('.')) rel = `./${rel}`;
    objectPath = rel;
    relativeToModule = true;
  }
  const text = generateTypes(spec, path, { importFrom: values['import-from'], name: values.name, objectPath, relativeToModule });
  if (values.out) {
    writeFileSync(values.out, text);
    process.stderr.write(`wrote ${values.out}\n`);
  } else {
    await new Promise<void>((res, rej) => process.stdout.write(text, (e) => (e ? rej(e) : res())));
  }
  return 0;
}
