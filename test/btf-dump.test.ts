// dumpBtfAsC / dumpBtfAsJson: the running kernel's BTF as a vmlinux.h that clang compiles, lays
// out exactly as BTF says (checked by _Static_asserts and by clang's own record layout dump,
// bitfields included), that builds every object of bpf/ with the same CO-RE relocations as the
// committed (bpftool-made) vmlinux.h, and that defines the same types as bpftool's dump.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Btf,
  dumpBtfAsC,
  dumpBtfAsJson,
  essentialName,
  loadBtfFile,
  parseBtfExt,
  type BtfType,
} from '../src/btf/index.js';
import { findElfSection } from '../src/btf/elf-section.js';

const VMLINUX = '/sys/kernel/btf/vmlinux';
const BPF_DIR = fileURLToPath(new URL('../bpf/', import.meta.url));
const CLANG = 'clang-19';

function hasTool(name: string): boolean {
  return spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0;
}
const hasClang = hasTool(CLANG);
const hasBpftool = hasTool('bpftool');
const noVmlinux = existsSync(VMLINUX) ? false : `${VMLINUX} does not exist`;
const noClang = hasClang ? false : `${CLANG} is not installed`;

const ARCH = process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : process.arch;
const TARGET_ARCH = ARCH === 'x86_64' ? 'x86' : ARCH === 'aarch64' ? 'arm64' : ARCH;
/** The flags of bpf/build.sh (minus the reproducibility ones, which only affect debug paths). */
const CFLAGS = ['-g', '-O2', '-target', 'bpf', '-mcpu=v3', `-D__TARGET_ARCH_${TARGET_ARCH}`, `-I/usr/include/${ARCH}-linux-gnu`, '-Wall', '-Werror'];

function clang(args: string[], cwd?: string): { ok: boolean; out: string; err: string } {
  const r = spawnSync(CLANG, args, { cwd, encoding: 'utf8', maxBuffer: 1 << 30 });
  return { ok: r.status === 0, out: r.stdout, err: r.stderr };
}

function ms(from: number): string {
  return `${(performance.now() - from).toFixed(0)} ms`;
}

const work = mkdtempSync(join(tmpdir(), 'tsbpf-btf-dump-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** Compiles `header` (plus `extra` C) as one BPF translation unit; returns clang's stderr or ''. */
function compileHeader(header: string, name: string, extra = '', syntaxOnly = false): string {
  const dir = mkdtempSync(join(work, name + '-'));
  writeFileSync(join(dir, 'types.h'), header);
  writeFileSync(join(dir, 'tu.c'), `#include "types.h"\n${extra}`);
  const out = syntaxOnly ? ['-fsyntax-only'] : ['-c', '-o', 'tu.o'];
  const r = clang(['-target', 'bpf', '-Wall', '-Werror', ...out, 'tu.c'], dir);
  return r.ok ? '' : r.err.slice(0, 4000);
}

// ---- clang's record layouts, to check every field (bitfields too) against BTF ----

interface ClangField {
  name: string;
  bitOffset: number;
}

/** Top-level named records of `clang -Xclang -fdump-record-layouts`: fields of depth 1, padding dropped. */
function clangLayouts(dump: string): Map<string, { size: number; fields: ClangField[] }[]> {
  const out = new Map<string, { size: number; fields: ClangField[] }[]>();
  for (const block of dump.split('*** Dumping AST Record Layout\n')) {
    const lines = block.split('\n').filter((l) => l.includes('|'));
    const head = /^\s+0 \| (struct|union) ([A-Za-z_]\w*)$/.exec(lines[0] ?? '');
    if (!head) continue;
    const fields: ClangField[] = [];
    let size = -1;
    for (const line of lines.slice(1)) {
      const sz = /\[sizeof=(\d+)/.exec(line);
      if (sz) {
        size = Number(sz[1]);
        break;
      }
      const m = /^\s*(\d+)(?::(\d+)-\d+)? \|   (\S.*)$/.exec(line);
      if (!m || m[3]!.startsWith(' ')) continue; // deeper nesting
      const decl = m[3]!;
      const isBitfield = m[2] !== undefined;
      // The field name is the last word, unless the declaration ends in the type (no name).
      const nameMatch = /(?:^|[\s*)\]])([A-Za-z_]\w*)(?:\[\d+\])*$/.exec(decl);
      let name = nameMatch ? nameMatch[1]! : '';
      if (decl.endsWith(' ') || /\((anonymous|unnamed) at [^)]*\)$/.test(decl.trimEnd())) name = '';
      // An anonymous bitfield is explicit padding, not a BTF member.
      if (isBitfield && name === '') continue;
      fields.push({ name, bitOffset: Number(m[1]) * 8 + (isBitfield ? Number(m[2]) : 0) });
    }
    const key = `${head[1]} ${head[2]}`;
    const list = out.get(key) ?? [];
    list.push({ size, fields });
    out.set(key, list);
  }
  return out;
}

/** Compares clang's layouts with the BTF composites of the same (essential) name; returns mismatches. */
function compareLayouts(btf: Btf, layouts: ReturnType<typeof clangLayouts>): { checked: number; fields: number; bad: string[] } {
  const bad: string[] = [];
  let checked = 0;
  let fields = 0;
  for (const [key, list] of layouts) {
    const [kind, cname] = key.split(' ') as ['struct' | 'union', string];
    // Our `___N` renames drop back to the BTF name; a BTF name may itself contain `___` (nf_conn___init).
    const names = new Set([cname, cname.replace(/___\d+$/, '')]);
    const candidates = [...names].flatMap((n) => btf.typesByName(n)).filter((c) => c.kind === kind) as Extract<BtfType, { kind: 'struct' | 'union' }>[];
    for (const got of list) {
      checked++;
      fields += got.fields.length;
      const ok = candidates.some((c) => {
        if (c.size !== got.size || c.members.length !== got.fields.length) return false;
        return c.members.every((m, i) => {
          const f = got.fields[i]!;
          let off = m.bitOffset;
          if (m.bitfieldSize === 0) {
            const r = btf.resolve(m.type);
            if (r.kind === 'int' && r.bits !== r.size * 8) off += r.bitsOffset;
          }
          return f.bitOffset === off && (m.name === '' ? f.name === '' : f.name === m.name || f.name === m.name + '_');
        });
      });
      if (!ok) bad.push(`${key}: clang ${JSON.stringify(got)}`);
    }
  }
  return { checked, fields, bad };
}

// ---- names a header defines at top level, to compare with bpftool's ----

function definedNames(header: string): { tags: string[]; typedefs: string[]; enumerators: string[] } {
  const tags: string[] = [];
  const typedefs: string[] = [];
  const enumerators: string[] = [];
  let inTypedef = false;
  let inEnum = false;
  for (const line of header.split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^(struct|union|enum) (\w+) \{/.exec(line))) {
      tags.push(`${m[1]} ${m[2]}`);
      inEnum = m[1] === 'enum';
      if (line.endsWith('};') || line.includes('{}')) inEnum = false;
    } else if (/^enum \{/.test(line)) {
      inEnum = true;
    } else if (line.startsWith('typedef ')) {
      if (line.endsWith('{')) {
        inTypedef = true;
        inEnum = line.startsWith('typedef enum');
        continue;
      }
      const body = line.slice(0, -1);
      const name =
        /\(\*\s*(?:const\s+|volatile\s+)*(\w+)/.exec(body)?.[1] ??
        (body.includes('(') ? /(\w+)\s*\(/.exec(body)?.[1] : /(\w+)\s*(?:\[\d*\])*$/.exec(body)?.[1]);
      if (name) typedefs.push(name);
    } else if (/^\}/.test(line)) {
      if (inTypedef && (m = /(\w+)(?:\[\d*\])*;$/.exec(line))) typedefs.push(m[1]!);
      inTypedef = false;
      inEnum = false;
    } else if (inEnum && (m = /^\t(\w+) = /.exec(line))) {
      enumerators.push(m[1]!);
    }
  }
  return { tags, typedefs, enumerators };
}

/** Counts of names with the `___N` suffix dropped. */
function baseCounts(names: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const n of names) {
    const b = n.replace(/___\d+$/, '');
    counts.set(b, (counts.get(b) ?? 0) + 1);
  }
  return counts;
}

function diffCounts(a: Map<string, number>, b: Map<string, number>): string[] {
  const out: string[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    if ((a.get(k) ?? 0) !== (b.get(k) ?? 0)) out.push(`${k}: ours ${a.get(k) ?? 0}, bpftool ${b.get(k) ?? 0}`);
  }
  return out.sort();
}

// ---- CO-RE relocations of an object, by type name rather than local type id ----

function coreRelos(path: string): string[] {
  const data = readFileSync(path);
  const btfSec = findElfSection(data, '.BTF');
  const extSec = findElfSection(data, '.BTF.ext');
  if (!btfSec || !extSec) return [];
  const btf = Btf.parse(btfSec);
  const ext = parseBtfExt(extSec, btf);
  const out: string[] = [];
  for (const [sec, relos] of [...ext.coreRelos].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    for (const r of relos) {
      const ty = btf.type(r.typeId);
      out.push(`${sec} +${r.insnOff} kind=${r.kind} ${ty.kind} ${essentialName(ty.name)} ${r.accessor}`);
    }
  }
  return out;
}

/** Bytes of every program section (those with relocation records, func infos or code). */
function programBytes(path: string, sections: string[]): Map<string, string> {
  const data = readFileSync(path);
  const out = new Map<string, string>();
  for (const s of sections) out.set(s, findElfSection(data, s)?.toString('hex') ?? '');
  return out;
}

// ==== the tests ====

t.test('vmlinux as C', { skip: noVmlinux || noClang }, async (t) => {
  let start = performance.now();
  const btf = loadBtfFile(VMLINUX);
  const parseTime = ms(start);
  start = performance.now();
  const header = dumpBtfAsC(btf);
  const dumpTime = ms(start);
  start = performance.now();
  const again = dumpBtfAsC(loadBtfFile(VMLINUX));
  const secondTime = ms(start);
  t.comment(`vmlinux: ${btf.length - 1} types parsed in ${parseTime}, dumped as C in ${dumpTime} (${header.length} chars, ${header.split('\n').length} lines); parse+dump again in ${secondTime}`);
  t.equal(again, header, 'the output is deterministic');
  t.match(header, /^#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n/);
  t.match(header, /#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute push \(__attribute__\(\(preserve_access_index\)\), apply_to = record\)\n#endif/);
  t.match(header, /#pragma clang attribute pop\n#endif\n\n#endif \/\* __VMLINUX_H__ \*\/\n$/);
  t.match(header, /\nstruct task_struct \{\n/);
  t.match(header, /\ntypedef _Bool bool;\n/);
  t.match(header, /\nenum perf_callchain_context \{\n\tPERF_CONTEXT_HV = 18446744073709551584ULL,/);

  const dir = mkdtempSync(join(work, 'vmlinux-'));
  writeFileSync(join(dir, 'vmlinux.h'), header);

  t.test('compiles as a standalone BPF translation unit', async (t) => {
    writeFileSync(join(dir, 'alone.c'), '#include "vmlinux.h"\n');
    const s = performance.now();
    const r = clang([...CFLAGS, '-c', 'alone.c', '-o', 'alone.o'], dir);
    t.ok(r.ok, 'clang accepts it', { stderr: r.err.slice(0, 4000) });
    t.comment(`clang: ${ms(s)}`);
  });

  t.test('layout: static asserts and clang record layouts match BTF', async (t) => {
    let s = performance.now();
    const checked = dumpBtfAsC(btf, { layoutAsserts: true });
    t.comment(`dump with layout asserts: ${ms(s)}`);
    const asserts = checked.split('\n').filter((l) => l.startsWith('_Static_assert')).length;
    t.ok(asserts > 10000, `${asserts} static asserts`);
    writeFileSync(join(dir, 'checked.h'), checked);
    writeFileSync(join(dir, 'checked.c'), '#include "checked.h"\n');
    s = performance.now();
    const r = clang(['-target', 'bpf', '-Wall', '-Werror', '-fsyntax-only', '-Xclang', '-fdump-record-layouts', 'checked.c'], dir);
    t.ok(r.ok, 'every _Static_assert of sizeof and offsetof holds', { stderr: r.err.slice(0, 4000) });
    t.comment(`clang with layout dump: ${ms(s)}`);
    const layouts = clangLayouts(r.out);
    const { checked: n, fields, bad } = compareLayouts(btf, layouts);
    t.ok(n > 5000, `${n} named structs/unions compared with clang's layout (${fields} fields, bitfields included)`);
    t.same(bad.slice(0, 20), [], 'clang lays out every field where BTF says');
  });

  t.test('builds every bpf/*.c in place of the committed vmlinux.h, with the same CO-RE relocations', async (t) => {
    const headerKernel = /\(Linux ([^)]+)\)/.exec(readFileSync(join(BPF_DIR, 'vmlinux.h'), 'utf8').slice(0, 300))?.[1];
    const sameKernelAsHeader = headerKernel === release();
    if (!sameKernelAsHeader) t.comment(`bpf/vmlinux.h comes from Linux ${headerKernel}, this is ${release()}: objects are only compiled, not compared`);
    const src = mkdtempSync(join(work, 'bpf-'));
    for (const f of readdirSync(BPF_DIR)) {
      if ((f.endsWith('.c') || f.endsWith('.h')) && f !== 'vmlinux.h') copyFileSync(join(BPF_DIR, f), join(src, f));
    }
    copyFileSync(join(dir, 'vmlinux.h'), join(src, 'vmlinux.h'));
    const sources = readdirSync(src).filter((f) => f.endsWith('.c')).sort();
    let totalRelos = 0;
    for (const c of sources) {
      const name = c.slice(0, -2);
      const r = clang([...CFLAGS, '-I', src, '-c', c, '-o', `${name}.o`], src);
      t.ok(r.ok, `${c} compiles`, { stderr: r.err.slice(0, 4000) });
      if (!r.ok) continue;
      const committed = join(BPF_DIR, `${name}.o`);
      // The committed objects were built against the committed header, dumped from the kernel named in its
      // first line: only there must our dump of the running kernel give the same objects.
      if (!existsSync(committed) || !sameKernelAsHeader) continue;
      const ours = coreRelos(join(src, `${name}.o`));
      const theirs = coreRelos(committed);
      totalRelos += theirs.length;
      t.same(ours, theirs, `${c}: same CO-RE relocations (${theirs.length})`);
      const sections = [...new Set(theirs.map((l) => l.split(' ')[0]!))];
      if (sections.length > 0) {
        t.same(programBytes(join(src, `${name}.o`), sections), programBytes(committed, sections), `${c}: same instructions in ${sections.join(', ')}`);
      }
    }
    t.comment(`${sources.length} objects, ${totalRelos} CO-RE relocations compared`);
  });

  t.test('defines the same types as bpftool', { skip: hasBpftool ? false : 'bpftool is not installed' }, async (t) => {
    const s = performance.now();
    const r = spawnSync('bpftool', ['btf', 'dump', 'file', VMLINUX, 'format', 'c'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    t.equal(r.status, 0, 'bpftool dumps vmlinux');
    t.comment(`bpftool: ${ms(s)}`);
    const ours = definedNames(header);
    const theirs = definedNames(r.stdout);
    t.ok(ours.tags.length > 10000 && ours.typedefs.length > 1000, `${ours.tags.length} tags, ${ours.typedefs.length} typedefs, ${ours.enumerators.length} enumerators`);
    t.same(diffCounts(baseCounts(ours.tags), baseCounts(theirs.tags)), [], 'struct/union/enum definitions');
    // bpftool leaves out the kernel's `__builtin_va_list` typedef (clang's builtin has another
    // layout); we keep it under another name so that va_list members keep their kernel size.
    const typedefDiff = diffCounts(baseCounts(ours.typedefs), baseCounts(theirs.typedefs));
    t.same(typedefDiff, ['__builtin_va_list: ours 1, bpftool 0'], 'typedefs');
    t.same(diffCounts(baseCounts(ours.enumerators), baseCounts(theirs.enumerators)), [], 'enumerators');
    t.equal(new Set(ours.tags).size, ours.tags.length, 'no tag defined twice');
    t.equal(new Set(ours.typedefs).size, ours.typedefs.length, 'no typedef defined twice');
    t.equal(new Set(ours.enumerators).size, ours.enumerators.length, 'no enumerator defined twice');
  });
});

t.test('vmlinux as JSON', { skip: noVmlinux }, async (t) => {
  const btf = loadBtfFile(VMLINUX);
  const s = performance.now();
  const json = dumpBtfAsJson(btf);
  const text = JSON.stringify(json);
  t.comment(`JSON: ${ms(s)}, ${text.length} chars`);
  t.equal(json.format, 'tsbpf-btf');
  t.equal(json.version, 1);
  t.equal(json.types.length, btf.length - 1, 'one entry per type id');
  t.ok(json.types.every((ty, i) => ty.id === i + 1), 'in id order');
  const task = json.types.find((ty) => ty.kind === 'struct' && ty.name === 'task_struct')!;
  t.same(Object.keys(task), ['id', 'kind', 'name', 'size', 'members']);
  const e64 = json.types.find((ty) => ty.kind === 'enum64' && ty.name === 'perf_callchain_context');
  t.match(e64, { values: [{ name: 'PERF_CONTEXT_HV', value: '18446744073709551584' }] });
  t.equal(JSON.stringify(dumpBtfAsJson(loadBtfFile(VMLINUX))), text, 'deterministic');
});

t.test('a small object: bpf/core_self.o', { skip: noClang }, async (t) => {
  const btf = loadBtfFile(join(BPF_DIR, 'core_self.o'));
  const header = dumpBtfAsC(btf, { guard: 'CORE_SELF_H', layoutAsserts: true });
  t.match(header, /^#ifndef CORE_SELF_H\n/);
  t.equal(compileHeader(header, 'core-self'), '', 'compiles, layout asserts hold');
  t.notMatch(header, /\bstatic\b|SEC\(/, 'no functions or variables');
  const json = dumpBtfAsJson(btf);
  t.equal(json.types.length, btf.length - 1);
});

t.test('hand-built BTF with the tricky cases', { skip: noClang }, async (t) => {
  const b = Btf.empty();
  const char = b.addType({ kind: 'int', name: 'char', size: 1, signed: true, char: true, bool: false, bitsOffset: 0, bits: 8 });
  const int = b.addType({ kind: 'int', name: 'int', size: 4, signed: true, char: false, bool: false, bitsOffset: 0, bits: 32 });
  const uint = b.addType({ kind: 'int', name: 'unsigned int', size: 4, signed: false, char: false, bool: false, bitsOffset: 0, bits: 32 });
  const long = b.addType({ kind: 'int', name: 'long int', size: 8, signed: true, char: false, bool: false, bitsOffset: 0, bits: 64 });
  const u128 = b.addType({ kind: 'int', name: '__int128 unsigned', size: 16, signed: false, char: false, bool: false, bitsOffset: 0, bits: 128 });
  const bool = b.addType({ kind: 'int', name: '_Bool', size: 1, signed: false, char: false, bool: true, bitsOffset: 0, bits: 8 });
  const weird = b.addType({ kind: 'int', name: 'ssizetype', size: 8, signed: true, char: false, bool: false, bitsOffset: 0, bits: 64 });
  const dbl = b.addType({ kind: 'float', name: 'double', size: 8 });
  const u3 = b.addType({ kind: 'int', name: 'unsigned int', size: 4, signed: false, char: false, bool: false, bitsOffset: 0, bits: 3 });
  const cchar = b.addType({ kind: 'const', name: '', type: char });
  const pcchar = b.addType({ kind: 'ptr', name: '', type: cchar });
  const cvpcchar = b.addType({ kind: 'volatile', name: '', type: b.addType({ kind: 'const', name: '', type: pcchar }) });

  // packed: struct pk { char c; int x; } __attribute__((packed)), 5 bytes
  b.addType({ kind: 'struct', name: 'pk', size: 5, members: [{ name: 'c', type: char, bitOffset: 0, bitfieldSize: 0 }, { name: 'x', type: int, bitOffset: 8, bitfieldSize: 0 }] });
  // packed by size only: struct pk2 { int a; char b; } packed, 5 bytes
  b.addType({ kind: 'struct', name: 'pk2', size: 5, members: [{ name: 'a', type: int, bitOffset: 0, bitfieldSize: 0 }, { name: 'b', type: char, bitOffset: 32, bitfieldSize: 0 }] });
  // bitfields with a hole before c and one straddling bytes, plus a kind_flag-0 style int bitfield
  b.addType({
    kind: 'struct',
    name: 'bf',
    size: 16,
    members: [
      { name: 'a', type: uint, bitOffset: 0, bitfieldSize: 3 },
      { name: 'b', type: uint, bitOffset: 3, bitfieldSize: 9 },
      { name: 'c', type: uint, bitOffset: 20, bitfieldSize: 12 },
      { name: 'd', type: long, bitOffset: 64, bitfieldSize: 40 },
      { name: 'e', type: u3, bitOffset: 104, bitfieldSize: 0 },
      { name: 'flag', type: bool, bitOffset: 107, bitfieldSize: 1 },
    ],
  });
  // a bitfield that crosses its storage unit: only packed can place it
  b.addType({ kind: 'struct', name: 'bfx', size: 5, members: [{ name: 'a', type: char, bitOffset: 0, bitfieldSize: 0 }, { name: 'x', type: uint, bitOffset: 8, bitfieldSize: 30 }] });
  // a hole that natural alignment does not make: struct hole { char a; /* 15 bytes */ long b; }
  b.addType({ kind: 'struct', name: 'hole', size: 24, members: [{ name: 'a', type: char, bitOffset: 0, bitfieldSize: 0 }, { name: 'b', type: long, bitOffset: 128, bitfieldSize: 0 }] });
  // over-aligned: struct al { int x; } __attribute__((aligned(16)))
  const al = b.addType({ kind: 'struct', name: 'al', size: 16, members: [{ name: 'x', type: int, bitOffset: 0, bitfieldSize: 0 }] });
  b.addType({ kind: 'struct', name: 'has_al', size: 32, members: [{ name: 'c', type: char, bitOffset: 0, bitfieldSize: 0 }, { name: 'a', type: al, bitOffset: 128, bitfieldSize: 0 }] });
  // function pointers: int (*handlers[4])(int, ...); typedefs of a func proto, of a pointer to one, of a 2-D array
  const proto = b.addType({ kind: 'func_proto', name: '', returnType: int, params: [{ name: 'x', type: int }, { name: '', type: 0 }] });
  const vproto = b.addType({ kind: 'func_proto', name: '', returnType: 0, params: [] });
  const fnptr = b.addType({ kind: 'ptr', name: '', type: proto });
  const handlers = b.addType({ kind: 'array', name: '', type: fnptr, indexType: int, nelems: 4 });
  b.addType({ kind: 'typedef', name: 'fn_t', type: vproto });
  const row = b.addType({ kind: 'array', name: '', type: int, indexType: int, nelems: 3 });
  const grid = b.addType({ kind: 'array', name: '', type: row, indexType: int, nelems: 2 });
  b.addType({ kind: 'typedef', name: 'grid_t', type: grid });
  // pointer to an array, and a function returning a pointer to a function
  const pgrid = b.addType({ kind: 'ptr', name: '', type: grid });
  const hof = b.addType({ kind: 'func_proto', name: '', returnType: fnptr, params: [{ name: '', type: pcchar }] });
  // cycle through pointers: struct a { struct b *b; }; struct b { struct a *a; struct a_t_ptr ... }
  const sa = b.addType({ kind: 'struct', name: 'cyc_a', size: 8, members: [] });
  const sb = b.addType({ kind: 'struct', name: 'cyc_b', size: 16, members: [] });
  const tda = b.addType({ kind: 'typedef', name: 'cyc_a_t', type: sa });
  b.setType({ kind: 'struct', id: sa, name: 'cyc_a', size: 8, members: [{ name: 'b', type: b.addType({ kind: 'ptr', name: '', type: sb }), bitOffset: 0, bitfieldSize: 0 }] });
  b.setType({
    kind: 'struct',
    id: sb,
    name: 'cyc_b',
    size: 16,
    members: [
      { name: 'a', type: b.addType({ kind: 'ptr', name: '', type: tda }), bitOffset: 0, bitfieldSize: 0 },
      { name: 'self', type: b.addType({ kind: 'ptr', name: '', type: sb }), bitOffset: 64, bitfieldSize: 0 },
    ],
  });
  // forward-only struct and union, used through pointers
  const fwdS = b.addType({ kind: 'fwd', name: 'opaque', fwdKind: 'struct' });
  const fwdU = b.addType({ kind: 'fwd', name: 'opaque_u', fwdKind: 'union' });
  // anonymous union with a struct by value inside, and a named member of anonymous struct type
  const inner = b.addType({ kind: 'struct', name: 'inner', size: 8, members: [{ name: 'v', type: long, bitOffset: 0, bitfieldSize: 0 }] });
  const anonS = b.addType({ kind: 'struct', name: '', size: 8, members: [{ name: 'lo', type: int, bitOffset: 0, bitfieldSize: 0 }, { name: 'hi', type: int, bitOffset: 32, bitfieldSize: 0 }] });
  const anonU = b.addType({ kind: 'union', name: '', size: 16, members: [{ name: 'in', type: inner, bitOffset: 0, bitfieldSize: 0 }, { name: '', type: anonS, bitOffset: 0, bitfieldSize: 0 }, { name: 'wide', type: u128, bitOffset: 0, bitfieldSize: 0 }] });
  const anonE = b.addType({ kind: 'enum', name: '', size: 1, signed: false, values: [{ name: 'AE_ONE', value: 1 }] });
  b.addType({
    kind: 'struct',
    name: 'tricky',
    size: 144,
    members: [
      { name: 'handlers', type: handlers, bitOffset: 0, bitfieldSize: 0 },
      { name: 'u', type: anonU, bitOffset: 256, bitfieldSize: 0 },
      { name: '', type: anonU, bitOffset: 384, bitfieldSize: 0 },
      { name: 'pair', type: anonS, bitOffset: 512, bitfieldSize: 0 },
      { name: 'ae', type: anonE, bitOffset: 576, bitfieldSize: 0 },
      { name: 'p', type: cvpcchar, bitOffset: 640, bitfieldSize: 0 },
      { name: 'grid', type: pgrid, bitOffset: 704, bitfieldSize: 0 },
      { name: 'hof', type: b.addType({ kind: 'ptr', name: '', type: hof }), bitOffset: 768, bitfieldSize: 0 },
      { name: 'o', type: b.addType({ kind: 'ptr', name: '', type: fwdS }), bitOffset: 832, bitfieldSize: 0 },
      { name: 'ou', type: b.addType({ kind: 'ptr', name: '', type: fwdU }), bitOffset: 896, bitfieldSize: 0 },
      { name: 'd', type: dbl, bitOffset: 960, bitfieldSize: 0 },
      { name: 'w', type: weird, bitOffset: 1024, bitfieldSize: 0 },
    ],
  });
  // duplicate names: two struct dup, an enum dup (same tag namespace), a typedef dup (ordinary
  // namespace: keeps its name), enumerators that clash across enums, C keywords as names
  b.addType({ kind: 'struct', name: 'dup', size: 4, members: [{ name: 'x', type: int, bitOffset: 0, bitfieldSize: 0 }] });
  b.addType({ kind: 'struct', name: 'dup', size: 8, members: [{ name: 'y', type: long, bitOffset: 0, bitfieldSize: 0 }] });
  b.addType({ kind: 'enum', name: 'dup', size: 4, signed: true, values: [{ name: 'CLASH', value: -1 }, { name: 'ONLY', value: -2147483648 }] });
  b.addType({ kind: 'typedef', name: 'dup', type: int });
  b.addType({ kind: 'enum', name: 'other', size: 4, signed: false, values: [{ name: 'CLASH', value: 0xffffffff }] });
  b.addType({ kind: 'struct', name: 'int', size: 4, members: [{ name: 'for', type: int, bitOffset: 0, bitfieldSize: 0 }] });
  b.addType({ kind: 'struct', name: 'we-ird', size: 1, members: [{ name: 'm.x', type: char, bitOffset: 0, bitfieldSize: 0 }] });
  // enums: 64-bit values, a signed 64-bit minimum, a 1-byte enum, an 8-byte enum of small values
  b.addType({ kind: 'enum64', name: 'big', size: 8, signed: false, values: [{ name: 'BIG_MAX', value: 0xffffffffffffffffn }, { name: 'BIG_33', value: 1n << 32n }] });
  b.addType({ kind: 'enum64', name: 'sbig', size: 8, signed: true, values: [{ name: 'SBIG_MIN', value: -(1n << 63n) }, { name: 'SBIG_ONE', value: 1n }] });
  b.addType({ kind: 'enum', name: 'tiny', size: 1, signed: false, values: [{ name: 'TINY_A', value: 7 }] });
  b.addType({ kind: 'enum64', name: 'wide_small', size: 8, signed: false, values: [{ name: 'WS_A', value: 1n }] });
  // an unused anonymous enum: written at top level for its constants
  b.addType({ kind: 'enum', name: '', size: 4, signed: false, values: [{ name: 'LONELY', value: 3 }] });
  // empty struct, union padded past its members, and a type_tag that must vanish
  b.addType({ kind: 'struct', name: 'empty', size: 0, members: [] });
  b.addType({ kind: 'union', name: 'upad', size: 24, members: [{ name: 'c', type: char, bitOffset: 0, bitfieldSize: 0 }, { name: 'x', type: long, bitOffset: 0, bitfieldSize: 0 }] });
  const tagged = b.addType({ kind: 'type_tag', name: 'user', type: int });
  b.addType({ kind: 'struct', name: 'tags', size: 8, members: [{ name: 'p', type: b.addType({ kind: 'ptr', name: '', type: tagged }), bitOffset: 0, bitfieldSize: 0 }] });
  // kinds that are not written
  const fn = b.addType({ kind: 'func', name: 'some_func', type: vproto, linkage: 'global' });
  b.addType({ kind: 'decl_tag', name: 'tag', type: fn, componentIdx: -1 });
  b.addType({ kind: 'var', name: 'some_var', type: int, linkage: 'global' });

  // Round-trip through marshal so the dump reads what the parser makes of it.
  const btf = Btf.parse(b.marshal());
  const header = dumpBtfAsC(btf, { guard: 'TRICKY_H', comment: 'hand-built', layoutAsserts: true });
  const err = compileHeader(
    header,
    'tricky',
    [
      '_Static_assert(_Alignof(struct al) == 16, "al");',
      '_Static_assert(_Alignof(struct pk) == 1, "pk");',
      '_Static_assert(sizeof(enum tiny) == 1, "tiny");',
      '_Static_assert(sizeof(enum wide_small) == 8, "ws");',
      '_Static_assert(BIG_MAX == 0xffffffffffffffffULL, "big");',
      '_Static_assert(SBIG_MIN < 0, "sbig");',
      '_Static_assert(CLASH == -1 && CLASH___2 == 0xffffffffU, "clash");',
      '_Static_assert(LONELY == 3, "lonely");',
      '_Static_assert(sizeof(grid_t) == 24, "grid");',
      '_Static_assert(sizeof(union upad) == 24, "upad");',
      'static int probe(struct bf *b) { return b->a + b->b + b->c + (int)b->d + b->e + b->flag; }',
      'static int use(void) { struct bf b = { .a = 5, .c = 7 }; return probe(&b); }',
      'int sink(struct tricky *t, fn_t *f, dup d) { f(); return t->handlers[1](1, 2, 3) + t->lo + t->pair.hi + (*t->grid)[1][2] + d + use(); }',
    ].join('\n'),
    true,
  );
  t.equal(err, '', 'compiles; every layout assert holds', { header });
  for (const want of [
    /\nstruct pk \{\n\tchar c;\n\tint x;\n\} __attribute__\(\(packed\)\);/,
    /\nstruct pk2 \{\n\tint a;\n\tchar b;\n\} __attribute__\(\(packed\)\);/,
    /\tunsigned int a: 3;\n\tunsigned int b: 9;\n\t(int|short|char|long): \d+;\n\tunsigned int c: 12;\n\tlong int d: 40;\n\tunsigned int e: 3;\n\t_Bool flag: 1;/,
    /\nstruct bfx \{\n\tchar a;\n\tunsigned int x: 30;\n\} __attribute__\(\(packed\)\);/,
    /\nstruct hole \{\n\tchar a;\n\tlong: 56;\n\tlong: 64;\n\tlong int b;\n\};/,
    /\nstruct al \{\n\tint x;\n\} __attribute__\(\(aligned\(16\)\)\);/,
    /\tint \(\*handlers\[4\]\)\(int, \.\.\.\);/,
    /\ntypedef void fn_t\(void\);/,
    /\ntypedef int grid_t\[2\]\[3\];/,
    /\tint \(\*\(\*hof\)\(const char \*\)\)\(int, \.\.\.\);/,
    /\tint \(\*grid\)\[2\]\[3\];/,
    /\tconst char \*const volatile p;/,
    /\tstruct opaque \*o;\n\tunion opaque_u \*ou;/,
    /\nstruct opaque;\n/,
    /\nunion opaque_u;\n/,
    /\tunion \{\n\t\tstruct inner in;\n\t\tstruct \{\n\t\t\tint lo;\n\t\t\tint hi;\n\t\t\};\n\t\t__int128 unsigned wide;\n\t\} u;/,
    /\tenum \{\n\t\tAE_ONE = 1,\n\t\} __attribute__\(\(mode\(QI\)\)\) ae;/,
    /\tdouble d;\n\tsigned long long w;/,
    /\nstruct dup \{\n\tint x;\n\};/,
    /\nstruct dup___2 \{\n\tlong int y;\n\};/,
    /\nenum dup___3 \{\n\tCLASH = -1,\n\tONLY = -2147483648,\n\};/,
    /\ntypedef int dup;/,
    /\nenum other \{\n\tCLASH___2 = 4294967295U,\n\};/,
    /\nstruct int___2 \{\n\tint for_;\n\};/,
    /\nstruct we_ird \{\n\tchar m_x;\n\};/,
    /\tBIG_MAX = 18446744073709551615ULL,\n\tBIG_33 = 4294967296ULL,/,
    /\tSBIG_MIN = \(-9223372036854775807LL - 1\),/,
    /\nenum tiny \{\n\tTINY_A = 7,\n\} __attribute__\(\(mode\(QI\)\)\);/,
    /\} __attribute__\(\(mode\(DI\)\)\);/,
    /\nenum \{\n\tLONELY = 3,\n\};/,
    /\nstruct empty \{\};/,
    /\nstruct tags \{\n\tint \*p;\n\};/,
  ]) {
    t.match(header, want, String(want));
  }
  t.notMatch(header, /some_func|some_var|\buser\b/, 'FUNC, VAR, DECL_TAG and TYPE_TAG are not written');
  // struct cyc_b needs cyc_a_t, which needs struct cyc_a declared; definitions come before by-value use.
  const at = (re: RegExp): number => header.search(re);
  t.ok(at(/\ntypedef struct cyc_a cyc_a_t;/) > 0, 'typedef of a struct');
  t.ok(at(/\nstruct inner \{/) < at(/\nstruct tricky \{/), 'a struct used by value comes first');
  t.ok(at(/\nstruct cyc_a;|\nstruct cyc_a \{/) < at(/\ntypedef struct cyc_a cyc_a_t;/), 'declared before the typedef');
  t.equal(dumpBtfAsC(btf, { guard: 'TRICKY_H', comment: 'hand-built', layoutAsserts: true }), header, 'deterministic');

  t.test('types option: only the named ones and what they need', async (t) => {
    const part = dumpBtfAsC(btf, { types: ['tricky'], preserveAccessIndex: false });
    t.match(part, /\nstruct inner \{/);
    t.match(part, /\nstruct tricky \{/);
    t.notMatch(part, /struct dup|preserve_access_index/);
    t.equal(compileHeader(part, 'part'), '');
    t.throws(() => dumpBtfAsC(btf, { types: ['no_such_type'] }), /no BTF type named/);
  });

  t.test('JSON shape', async (t) => {
    const json = dumpBtfAsJson(btf);
    t.equal(json.types.length, btf.length - 1);
    const bf = json.types.find((ty) => ty.name === 'bf')!;
    t.same(bf, {
      id: bf.id,
      kind: 'struct',
      name: 'bf',
      size: 16,
      members: [
        { name: 'a', type: uint, bitOffset: 0, bitfieldSize: 3 },
        { name: 'b', type: uint, bitOffset: 3, bitfieldSize: 9 },
        { name: 'c', type: uint, bitOffset: 20, bitfieldSize: 12 },
        { name: 'd', type: long, bitOffset: 64, bitfieldSize: 40 },
        { name: 'e', type: u3, bitOffset: 104, bitfieldSize: 0 },
        { name: 'flag', type: bool, bitOffset: 107, bitfieldSize: 1 },
      ],
    });
    t.match(json.types.find((ty) => ty.name === 'sbig'), { kind: 'enum64', signed: true, values: [{ name: 'SBIG_MIN', value: '-9223372036854775808' }, { name: 'SBIG_ONE', value: '1' }] });
    t.match(json.types.find((ty) => ty.name === 'dup' && ty.kind === 'enum'), { values: [{ name: 'CLASH', value: -1 }] });
    t.same(json.types.find((ty) => ty.name === 'some_func'), { id: fn, kind: 'func', name: 'some_func', type: vproto, linkage: 'global' });
    t.doesNotThrow(() => JSON.parse(JSON.stringify(json)));
  });
});
