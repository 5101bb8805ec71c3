// Native executables and shared libraries, read for uprobes and USDT: symbols (.symtab and .dynsym),
// virtual address → file offset through the PT_LOAD program headers, `.note.stapsdt` USDT notes and
// their argument specs, and where a library name like "libc.so.6" lives on this system.
//
// Our own reader over a Buffer (elfy does not read symbols and misreads 64-bit fields): every read is
// bounds-checked, so a truncated or corrupt file ends in an ElfError, never a RangeError.

import { readFileSync, statSync, existsSync, accessSync, constants as fsConstants } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { basename, isAbsolute, join, resolve as resolvePath } from 'node:path';
import { ElfError, TsbpfError } from '../errors.js';

const PT_LOAD = 1;
const PF_X = 1;
const SHT_SYMTAB = 2;
const SHT_NOTE = 7;
const SHT_NOBITS = 8;
const SHT_DYNSYM = 11;
const SHN_UNDEF = 0;
const SHN_XINDEX = 0xffff;
const NT_STAPSDT = 3;

/** Symbol types (STT_*). */
export const STT = { NOTYPE: 0, OBJECT: 1, FUNC: 2, SECTION: 3, FILE: 4, GNU_IFUNC: 10 } as const;
/** Symbol bindings (STB_*). */
export const STB = { LOCAL: 0, GLOBAL: 1, WEAK: 2 } as const;

export interface NativeSection {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
}

export interface NativeSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  filesz: number;
  memsz: number;
}

export interface NativeSymbol {
  name: string;
  /** st_value: the link-time virtual address. */
  value: bigint;
  size: number;
  /** STT_* */
  type: number;
  /** STB_* */
  bind: number;
  shndx: number;
  table: '.symtab' | '.dynsym';
}

/** One USDT probe site from `.note.stapsdt`. */
export interface UsdtNote {
  provider: string;
  name: string;
  /** Probe address as linked, already adjusted by `.stapsdt.base` (prelink). */
  pc: bigint;
  /** File offset of the probe address: what a uprobe attaches to. */
  offset: number;
  /** The `.stapsdt.base` address recorded in the note. */
  base: bigint;
  /** Semaphore address (0n: none). */
  semaphore: bigint;
  /** File offset of the semaphore (0: none): the uprobe's ref_ctr_offset. */
  semaphoreOffset: number;
  /** The raw argument spec, e.g. `-4@%edi 8@-16(%rbp) -4@$5`. */
  argSpec: string;
}

/** How a USDT argument is found when the probe fires. */
export type UsdtArgKind = 'const' | 'reg' | 'mem';

export interface UsdtArg {
  /** The argument's text in the spec, e.g. `-4@-20(%rbp)`. */
  text: string;
  /** Size in bytes (1, 2, 4 or 8). */
  size: number;
  signed: boolean;
  kind: UsdtArgKind;
  /** 'reg'/'mem': the register as written (`edi`, `rbp`) and its byte offset in struct pt_regs. */
  reg?: string;
  regOffset?: number;
  /** 'const': the value; 'mem': the displacement added to the register. */
  value: bigint;
}

function err(path: string, msg: string, section?: string): ElfError {
  return new ElfError(`${path}: ${msg}`, section ? { section } : undefined);
}

/** A parsed native ELF file (64-bit little-endian: x86_64, arm64, riscv64, ...). */
export class NativeElf {
  readonly path: string;
  /** ET_EXEC (2) or ET_DYN (3, PIE executables and shared libraries). */
  readonly elfType: number;
  readonly machine: number;
  readonly sections: NativeSection[];
  readonly segments: NativeSegment[];
  readonly #buf: Buffer;
  #symbols: NativeSymbol[] | undefined;
  #byName: Map<string, NativeSymbol[]> | undefined;
  #notes: UsdtNote[] | undefined;

  constructor(buf: Buffer, path = '<buffer>') {
    this.path = path;
    this.#buf = buf;
    if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw err(path, 'not an ELF file (no \\x7fELF magic)');
    if (buf[4] !== 2 || buf[5] !== 1) {
      throw err(path, `unsupported ELF class/byte order (class ${buf[4]}, data ${buf[5]}): only 64-bit little-endian binaries can be probed`);
    }
    this.elfType = buf.readUInt16LE(16);
    this.machine = buf.readUInt16LE(18);
    if (this.elfType !== 2 && this.elfType !== 3) {
      throw err(path, `ELF type ${this.elfType} is not an executable or shared library (want ET_EXEC or ET_DYN)`);
    }
    const phoff = this.#off(buf.readBigUInt64LE(32), 'e_phoff');
    const shoff = this.#off(buf.readBigUInt64LE(40), 'e_shoff');
    const phentsize = buf.readUInt16LE(54);
    const phnum = buf.readUInt16LE(56);
    const shentsize = buf.readUInt16LE(58);
    let shnum = buf.readUInt16LE(60);
    let shstrndx = buf.readUInt16LE(62);

    this.segments = [];
    if (phnum > 0) {
      if (phentsize < 56) throw err(path, `e_phentsize ${phentsize} is too small`);
      this.#need(phoff, phnum * phentsize, 'program header table');
      for (let i = 0; i < phnum; i++) {
        const o = phoff + i * phentsize;
        this.segments.push({
          type: buf.readUInt32LE(o),
          flags: buf.readUInt32LE(o + 4),
          offset: this.#off(buf.readBigUInt64LE(o + 8), `program header ${i} p_offset`),
          vaddr: buf.readBigUInt64LE(o + 16),
          filesz: this.#off(buf.readBigUInt64LE(o + 32), `program header ${i} p_filesz`),
          memsz: this.#off(buf.readBigUInt64LE(o + 40), `program header ${i} p_memsz`),
        });
      }
    }

    this.sections = [];
    if (shoff !== 0) {
      if (shentsize < 64) throw err(path, `e_shentsize ${shentsize} is too small`);
      this.#need(shoff, 64, 'section header 0');
      if (shnum === 0) shnum = this.#off(buf.readBigUInt64LE(shoff + 32), 'section count (sh_size of section 0)');
      if (shstrndx === SHN_XINDEX) shstrndx = buf.readUInt32LE(shoff + 40);
      this.#need(shoff, shnum * shentsize, 'section header table');
      const raw: Omit<NativeSection, 'name'>[] = [];
      const nameOffs: number[] = [];
      for (let i = 0; i < shnum; i++) {
        const o = shoff + i * shentsize;
        nameOffs.push(buf.readUInt32LE(o));
        const type = buf.readUInt32LE(o + 4);
        const s = {
          index: i,
          type,
          flags: buf.readBigUInt64LE(o + 8),
          addr: buf.readBigUInt64LE(o + 16),
          offset: this.#off(buf.readBigUInt64LE(o + 24), `section ${i} sh_offset`),
          size: this.#off(buf.readBigUInt64LE(o + 32), `section ${i} sh_size`),
          link: buf.readUInt32LE(o + 40),
        };
        if (type !== SHT_NOBITS && type !== 0) this.#need(s.offset, s.size, `section ${i} data`);
        raw.push(s);
      }
      if (shstrndx >= shnum) throw err(path, `e_shstrndx ${shstrndx} is out of range (${shnum} sections)`);
      const strtab = raw[shstrndx];
      for (let i = 0; i < shnum; i++) {
        this.sections.push({ ...raw[i], name: i === 0 ? '' : this.#str(strtab, nameOffs[i], `name of section ${i}`) });
      }
    }
  }

  /** Parse the file at `path` (see `openBinary` for a cached, name-resolving variant). */
  static read(path: string): NativeElf {
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new TsbpfError(`binary "${path}" cannot be read (${code ?? String(e)})`, { cause: e });
    }
    return new NativeElf(buf, path);
  }

  #off(v: bigint, what: string): number {
    if (v > BigInt(this.#buf.length)) throw err(this.path, `${what} (${v}) is past the end of the file (${this.#buf.length} bytes)`);
    return Number(v);
  }

  #need(off: number, len: number, what: string): void {
    if (off < 0 || len < 0 || off + len > this.#buf.length) {
      throw err(this.path, `${what} (bytes ${off}..${off + len}) is past the end of the file (${this.#buf.length} bytes)`);
    }
  }

  #str(tab: { offset: number; size: number; type: number }, at: number, what: string): string {
    if (tab.type === SHT_NOBITS || at >= tab.size) throw err(this.path, `${what}: string offset ${at} is outside its string table`);
    const start = tab.offset + at;
    const end = this.#buf.indexOf(0, start);
    if (end < 0 || end >= tab.offset + tab.size) throw err(this.path, `${what}: string is not NUL-terminated inside its table`);
    return this.#buf.toString('latin1', start, end);
  }

  section(name: string): NativeSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** Every symbol of .symtab then .dynsym (undefined and nameless ones skipped). */
  symbols(): NativeSymbol[] {
    if (this.#symbols) return this.#symbols;
    const out: NativeSymbol[] = [];
    for (const sec of this.sections) {
      if (sec.type !== SHT_SYMTAB && sec.type !== SHT_DYNSYM) continue;
      const table = sec.type === SHT_SYMTAB ? '.symtab' : '.dynsym';
      if (sec.link >= this.sections.length) throw err(this.path, `${sec.name}: sh_link ${sec.link} names no section`, sec.name);
      const strtab = this.sections[sec.link];
      const n = Math.floor(sec.size / 24);
      for (let i = 1; i < n; i++) {
        const o = sec.offset + i * 24;
        const shndx = this.#buf.readUInt16LE(o + 6);
        const nameOff = this.#buf.readUInt32LE(o);
        if (shndx === SHN_UNDEF || nameOff === 0) continue;
        const info = this.#buf[o + 4];
        out.push({
          name: this.#str(strtab, nameOff, `${sec.name} symbol ${i}`),
          value: this.#buf.readBigUInt64LE(o + 8),
          size: Number(this.#buf.readBigUInt64LE(o + 16) & 0xffffffffn),
          type: info & 0xf,
          bind: info >> 4,
          shndx,
          table,
        });
      }
    }
    this.#symbols = out;
    return out;
  }

  #index(): Map<string, NativeSymbol[]> {
    if (this.#byName) return this.#byName;
    const m = new Map<string, NativeSymbol[]>();
    for (const s of this.symbols()) {
      const list = m.get(s.name);
      if (list) list.push(s);
      else m.set(s.name, [s]);
    }
    this.#byName = m;
    return m;
  }

  /** The segment (PT_LOAD, file-backed part) that holds `addr`; executable segments first. */
  segmentOf(addr: bigint): NativeSegment | undefined {
    let found: NativeSegment | undefined;
    for (const p of this.segments) {
      if (p.type !== PT_LOAD || addr < p.vaddr || addr >= p.vaddr + BigInt(p.filesz)) continue;
      if (p.flags & PF_X) return p;
      found ??= p;
    }
    return found;
  }

  /** Link-time virtual address → file offset (through PT_LOAD, or the section when there are no segments). */
  addrToOffset(addr: bigint, what = `address 0x${addr.toString(16)}`): number {
    const p = this.segmentOf(addr);
    if (p) return p.offset + Number(addr - p.vaddr);
    if (this.segments.length === 0) {
      const s = this.sections.find((x) => x.addr !== 0n && x.type !== SHT_NOBITS && addr >= x.addr && addr < x.addr + BigInt(x.size));
      if (s) return s.offset + Number(addr - s.addr);
    }
    throw err(this.path, `${what} is in no file-backed loadable segment`);
  }

  /**
   * The function symbol `name` (a trailing `@VERSION`/`@@VERSION` is ignored) as a file offset. Throws a
   * TsbpfError naming the binary when it is missing, ambiguous or an indirect function.
   */
  findFunction(name: string): { symbol: NativeSymbol; offset: number } {
    const base = name.replace(/@@?[^@]*$/, '');
    const cands = (this.#index().get(base) ?? []).filter((s) => s.type === STT.FUNC || s.type === STT.GNU_IFUNC || (s.type === STT.NOTYPE && s.value !== 0n));
    if (cands.length === 0) {
      const any = this.#index().get(base);
      if (any?.length) throw new TsbpfError(`symbol "${base}" in ${this.path} is not a function (type ${any[0].type})`);
      const hint = this.symbols().length === 0 ? ' (the binary is stripped: it has no .symtab or .dynsym; pass offset instead)' : '';
      throw new TsbpfError(`symbol "${base}" not found in ${this.path}${hint}; check the name with \`nm -D ${this.path}\` or \`nm ${this.path}\``);
    }
    // The same function usually appears in both tables; a global definition wins over local ones.
    const distinct = new Map<bigint, NativeSymbol>();
    for (const s of cands) {
      const prev = distinct.get(s.value);
      if (!prev || (prev.bind === STB.LOCAL && s.bind !== STB.LOCAL)) distinct.set(s.value, s);
    }
    let picks = [...distinct.values()];
    if (picks.length > 1) {
      const globals = picks.filter((s) => s.bind === STB.GLOBAL);
      const weaks = picks.filter((s) => s.bind === STB.WEAK);
      picks = globals.length ? globals : weaks.length ? weaks : picks;
    }
    if (picks.length > 1) {
      const where = picks.map((s) => `0x${s.value.toString(16)}`).join(', ');
      throw new TsbpfError(`symbol "${base}" is ambiguous in ${this.path}: ${picks.length} definitions at ${where}; pass offset to choose one`);
    }
    const symbol = picks[0];
    if (symbol.type === STT.GNU_IFUNC) {
      throw new TsbpfError(
        `symbol "${base}" in ${this.path} is an indirect function (STT_GNU_IFUNC): a uprobe there would probe the resolver, ` +
          `which runs once at load time; probe the implementation it selects (e.g. __${base}_avx2) or pass its offset`,
      );
    }
    return { symbol, offset: this.addrToOffset(symbol.value, `symbol "${base}" (0x${symbol.value.toString(16)})`) };
  }

  /** Function symbols whose name matches `pattern` (a glob with `*` and `?`), deduplicated by address. */
  matchFunctions(pattern: string): { name: string; offset: number }[] {
    const re = globToRegExp(pattern);
    const byAddr = new Map<bigint, NativeSymbol>();
    for (const s of this.symbols()) {
      if (s.type !== STT.FUNC || s.value === 0n || !re.test(s.name)) continue;
      const prev = byAddr.get(s.value);
      if (!prev || (prev.bind === STB.LOCAL && s.bind !== STB.LOCAL)) byAddr.set(s.value, s);
    }
    return [...byAddr.values()]
      .sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
      .map((s) => ({ name: s.name, offset: this.addrToOffset(s.value, `symbol "${s.name}"`) }));
  }

  /** Every USDT probe site in `.note.stapsdt`. */
  usdtNotes(): UsdtNote[] {
    if (this.#notes) return this.#notes;
    const out: UsdtNote[] = [];
    const sec = this.sections.find((s) => s.name === '.note.stapsdt' && s.type === SHT_NOTE);
    const baseSec = this.section('.stapsdt.base');
    if (sec) {
      const b = this.#buf;
      const end = sec.offset + sec.size;
      let o = sec.offset;
      while (o + 12 <= end) {
        const namesz = b.readUInt32LE(o);
        const descsz = b.readUInt32LE(o + 4);
        const type = b.readUInt32LE(o + 8);
        const nameAt = o + 12;
        const descAt = nameAt + align4(namesz);
        const next = descAt + align4(descsz);
        if (namesz > end || descsz > end || next > end) throw err(this.path, `.note.stapsdt: note at offset ${o - sec.offset} runs past the section`, '.note.stapsdt');
        const owner = b.toString('latin1', nameAt, nameAt + Math.max(0, namesz - 1));
        if (owner === 'stapsdt' && type === NT_STAPSDT) {
          if (descsz < 24 + 3) throw err(this.path, `.note.stapsdt: note at offset ${o - sec.offset} is too short (${descsz} bytes)`, '.note.stapsdt');
          const pcRaw = b.readBigUInt64LE(descAt);
          const base = b.readBigUInt64LE(descAt + 8);
          const semaphore = b.readBigUInt64LE(descAt + 16);
          const strs: string[] = [];
          let p = descAt + 24;
          const descEnd = descAt + descsz;
          for (let i = 0; i < 3; i++) {
            const z = b.indexOf(0, p);
            if (z < 0 || z >= descEnd) throw err(this.path, `.note.stapsdt: note at offset ${o - sec.offset} has an unterminated string`, '.note.stapsdt');
            strs.push(b.toString('latin1', p, z));
            p = z + 1;
          }
          // Prelinking moves the code but not the note: the distance between where .stapsdt.base is now
          // and where the note says it was is the shift of every probe address.
          const pc = baseSec && base !== 0n ? pcRaw + (baseSec.addr - base) : pcRaw;
          const what = `USDT ${strs[0]}:${strs[1]}`;
          out.push({
            provider: strs[0],
            name: strs[1],
            pc,
            offset: this.addrToOffset(pc, `${what} probe address 0x${pc.toString(16)}`),
            base,
            semaphore,
            semaphoreOffset: semaphore === 0n ? 0 : this.addrToOffset(semaphore, `${what} semaphore address 0x${semaphore.toString(16)}`),
            argSpec: strs[2],
          });
        }
        o = next;
      }
    }
    this.#notes = out;
    return out;
  }
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** A glob (`*`, `?`) as an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  let s = '^';
  for (const ch of glob) {
    if (ch === '*') s += '.*';
    else if (ch === '?') s += '.';
    else s += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(s + '$');
}

// ---------------------------------------------------------------------------------------------------------
// USDT argument specs

/** Byte offsets in x86_64 struct pt_regs, by 64-bit register name. */
const X86_64_PT_REGS: Record<string, number> = {
  r15: 0, r14: 8, r13: 16, r12: 24, rbp: 32, rbx: 40, r11: 48, r10: 56, r9: 64, r8: 72,
  rax: 80, rcx: 88, rdx: 96, rsi: 104, rdi: 112, rip: 128, rsp: 152,
};

/** Every x86_64 register spelling (64/32/16/8-bit) → its 64-bit register. */
const X86_64_ALIASES: Record<string, string> = (() => {
  const m: Record<string, string> = {};
  for (const [r64, r32, r16, r8] of [
    ['rax', 'eax', 'ax', 'al'], ['rbx', 'ebx', 'bx', 'bl'], ['rcx', 'ecx', 'cx', 'cl'], ['rdx', 'edx', 'dx', 'dl'],
    ['rsi', 'esi', 'si', 'sil'], ['rdi', 'edi', 'di', 'dil'], ['rbp', 'ebp', 'bp', 'bpl'], ['rsp', 'esp', 'sp', 'spl'],
  ]) {
    for (const n of [r64, r32, r16, r8]) m[n] = r64;
  }
  for (let i = 8; i <= 15; i++) for (const suf of ['', 'd', 'w', 'b']) m[`r${i}${suf}`] = `r${i}`;
  m.rip = 'rip';
  return m;
})();

/** The pt_regs offset of an x86_64 register name (`edi`, `r8d`, `rbp`), or undefined. */
export function x86RegOffset(reg: string): number | undefined {
  const r64 = X86_64_ALIASES[reg.toLowerCase()];
  return r64 === undefined ? undefined : X86_64_PT_REGS[r64];
}

const EM_X86_64 = 62;

/** A decimal or 0x integer with an optional minus sign. */
function parseInt64(s: string): bigint {
  const neg = s.startsWith('-');
  const mag = BigInt(neg ? s.slice(1) : s);
  return neg ? -mag : mag;
}

/**
 * Parse a USDT argument spec (`-4@%edi 8@-16(%rbp) -4@$5`) for `machine` (EM_*; x86_64 only for now).
 * Throws a TsbpfError naming the argument it cannot read.
 */
export function parseUsdtArgs(spec: string, machine = EM_X86_64, where = 'USDT'): UsdtArg[] {
  if (machine !== EM_X86_64) throw new TsbpfError(`${where}: USDT argument specs of ELF machine ${machine} are not supported (x86_64 only)`);
  const out: UsdtArg[] = [];
  const text = spec.trim();
  if (!text) return out;
  for (const part of text.split(/\s+/)) {
    const m = /^(-?)(\d+)@(.+)$/.exec(part);
    if (!m) throw new TsbpfError(`${where}: cannot parse USDT argument "${part}" (want SIZE@OPERAND) in "${spec}"`);
    const size = Number(m[2]);
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new TsbpfError(`${where}: USDT argument "${part}" has size ${size} (want 1, 2, 4 or 8)`);
    const signed = m[1] === '-';
    const op = m[3];
    let r: RegExpExecArray | null;
    if ((r = /^\$(-?(?:0x[0-9a-fA-F]+|\d+))$/.exec(op))) {
      out.push({ text: part, size, signed, kind: 'const', value: BigInt.asUintN(64, parseInt64(r[1])) });
    } else if ((r = /^%(\w+)$/.exec(op))) {
      const off = x86RegOffset(r[1]);
      if (off === undefined) throw new TsbpfError(`${where}: USDT argument "${part}" uses unknown register %${r[1]}`);
      out.push({ text: part, size, signed, kind: 'reg', reg: r[1], regOffset: off, value: 0n });
    } else if ((r = /^(-?(?:0x[0-9a-fA-F]+|\d+))?\(%(\w+)\)$/.exec(op))) {
      const off = x86RegOffset(r[2]);
      if (off === undefined) throw new TsbpfError(`${where}: USDT argument "${part}" uses unknown register %${r[2]}`);
      const disp = r[1] ? parseInt64(r[1]) : 0n;
      out.push({ text: part, size, signed, kind: 'mem', reg: r[2], regOffset: off, value: disp });
    } else {
      throw new TsbpfError(`${where}: USDT argument "${part}" has an operand form tsbpf cannot read (supported: %reg, $const, off(%reg))`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Finding binaries

const cache = new Map<string, { key: string; elf: NativeElf }>();

/** Parse `path` (resolved with `resolveBinary`), reusing a previous parse while the file is unchanged. */
export function openBinary(binary: string, pid?: number): NativeElf {
  const path = resolveBinary(binary, pid);
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new TsbpfError(`binary "${path}" cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
  }
  if (!st.isFile()) throw new TsbpfError(`binary "${path}" is not a regular file`);
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  const hit = cache.get(path);
  if (hit && hit.key === key) return hit.elf;
  const elf = NativeElf.read(path);
  if (cache.size >= 16) cache.delete(cache.keys().next().value as string);
  cache.set(path, { key, elf });
  return elf;
}

const LIB_DIRS = (() => {
  const arch = process.arch === 'arm64' ? 'aarch64' : process.arch === 'x64' ? 'x86_64' : process.arch;
  return [`/lib/${arch}-linux-gnu`, `/usr/lib/${arch}-linux-gnu`, '/lib64', '/usr/lib64', '/lib', '/usr/lib', '/usr/local/lib'];
})();

function mappedLibrary(name: string, mapsFile: string): string | undefined {
  let maps: string;
  try {
    maps = readFileSync(mapsFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of maps.split('\n')) {
    const i = line.indexOf('/');
    if (i < 0) continue;
    const p = line.slice(i).replace(/ \(deleted\)$/, '');
    const b = basename(p);
    if (b === name || b.startsWith(`${name}.`)) return p;
  }
  return undefined;
}

let ldconfigCache: string | undefined;
function ldconfigLibrary(name: string): string | undefined {
  if (ldconfigCache === undefined) {
    ldconfigCache = '';
    for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
      try {
        ldconfigCache = execFileSync(bin, ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
        break;
      } catch {
        /* try the next */
      }
    }
  }
  const want64 = process.arch === 'x64' ? 'x86-64' : process.arch === 'arm64' ? 'AArch64' : '';
  let fallback: string | undefined;
  for (const line of ldconfigCache.split('\n')) {
    const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)/.exec(line);
    if (!m || (m[1] !== name && !m[1].startsWith(`${name}.`))) continue;
    if (!want64 || m[2].includes(want64)) return m[3];
    fallback ??= m[3];
  }
  return fallback;
}

function isExecutableFile(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Where `binary` is: a path (anything with a `/`) as is; a library name (`libc.so.6`, `libssl.so`) through
 * `/proc/PID/maps` (the library the target process has mapped, when `pid` is given), `/proc/self/maps`,
 * `ldconfig -p` and the standard library directories; any other name through `$PATH`. Throws a TsbpfError
 * saying where it looked.
 */
export function resolveBinary(binary: string, pid?: number): string {
  if (!binary) throw new TsbpfError('no binary given (want a path, a library name like "libc.so.6" or a program in $PATH)');
  if (binary.includes('/')) {
    const p = isAbsolute(binary) ? binary : resolvePath(binary);
    if (!existsSync(p)) throw new TsbpfError(`binary "${binary}" not found (${p} does not exist)`);
    return p;
  }
  if (/\.so(\.|$)/.test(binary)) {
    const found =
      (pid !== undefined && pid > 0 ? mappedLibrary(binary, `/proc/${pid}/maps`) : undefined) ??
      mappedLibrary(binary, '/proc/self/maps') ??
      ldconfigLibrary(binary) ??
      LIB_DIRS.map((d) => join(d, binary)).find((p) => existsSync(p));
    if (!found) {
      throw new TsbpfError(`library "${binary}" not found in /proc/self/maps, ldconfig -p or ${LIB_DIRS.join(', ')}; pass its full path`);
    }
    return found;
  }
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    const p = join(dir, binary);
    if (isExecutableFile(p)) return p;
  }
  throw new TsbpfError(`binary "${binary}" not found in $PATH; pass its path (with a "/") or a library name ending in .so`);
}
