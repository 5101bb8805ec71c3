#!/usr/bin/env node
// The `tsbpf` command. A client of the public API only.

import { parseArgs } from 'node:util';
import { Collection } from '../collection/collection.js';
import { loadCollectionSpec } from '../elf/index.js';
import { TsbpfError } from '../errors.js';
import { autoAttach, autoAttachSupport } from '../links/auto.js';
import type { Link } from '../links/link.js';
import { IterLink } from '../links/iter.js';
import { mapTypeName, type BpfMap } from '../maps/map.js';
import { ProgramType, programTypeName, VerifierError } from '../programs/program.js';
import { ownedFdCount } from '../syscall/fd.js';
import { waitersIdle } from '../ringbuf/index.js';
import { EventStream, isEventMapType, parseEventArgs } from './events.js';
import { getVariable } from '../elf/variables.js';
import { SyscallError } from '../syscall/errors.js';
import {
  applyGlobalFlags, flagOptions, globalFlags, globalsHelp, normalizeBoolArgs, setGlobal, UsageError, type GlobalFlag,
} from './globals.js';
import { clearHists, formatHists, keyText, mapHistLayout, readHists, type HistLayout } from './histogram.js';
import { formatGlobals, formatMap, isTabular } from './maps-print.js';
import type { CollectionSpec } from '../elf/spec.js';
import { EXAMPLES } from '../examples/index.js';
import { btfCommand } from './btf.js';
import { inspectCommand } from './inspect.js';
import { progCommand, mapCommand, linkCommand } from './list.js';
import { featureCommand } from './feature.js';
import { genCommand } from './gen-types.js';

const USAGE = `Usage: tsbpf load OBJECT.o [options] [--GLOBAL VALUE ...]
       tsbpf run NAME [args]       run a bundled example program (tsbpf run --help lists them)
       tsbpf btf dump [FILE] [--format c|json]   print BTF as a vmlinux.h or JSON
       tsbpf inspect OBJECT.o [--relocs] [--disasm] [--btf] [--json]   what an object holds, without loading it
       tsbpf prog|map|link list [--json]           the kernel's BPF objects and the processes holding them
       tsbpf map dump ID|PIN [--json]              a map's entries, decoded through its BTF
       tsbpf feature [--json] [--all-helpers]      what this kernel offers (program/map types, helpers, links)
       tsbpf gen types OBJECT.o [-o OUT.ts]        a typed TypeScript skeleton for the object

Load every map and program of a clang-compiled BPF object and print them.

Options:
  --attach             attach programs by their section name (tp/, raw_tp/, tp_btf/, ...)
                       and keep running until Ctrl-C (SIGINT) or SIGTERM. Meanwhile the records
                       of every ring buffer and perf event array are printed, one line each:
                       TIME (HH:MM:SS) then one column per member of the record's struct (MAP
                       too when there are several such maps); lost perf samples go to stderr.
                       Maps of log2 histograms (a struct value whose first member is u32 slots[N],
                       optionally with char comm[]) print as ASCII histograms, one per key; on
                       exit the other hash/array maps print as KEY VALUE tables, then the
                       writable globals (.data/.bss) with their values. Programs of type
                       syscall have no hook: in an object made only of them, each runs once
                       (BPF_PROG_TEST_RUN, zeroed context), its return value is printed and the
                       command exits.
  --interval SEC       with --attach: print the histograms every SEC seconds (default: on exit only)
  --count N            with --interval: stop after N prints
  --cumulative         do not clear the histogram maps after printing them
  --units NAME         histogram unit label (default usecs, or msecs when the object's targ_ms is true)
  --event MAP=TYPE     decode the records of MAP as BTF struct TYPE; repeatable. Default: the
                       object's "struct event" when it fits the records, else raw bytes in hex
  --json               print the records (and histograms) as JSON lines ({"time", "map", members...};
                       64-bit numbers beyond 2^53 as strings); everything else goes to stderr
  --iface NAME         network interface for xdp and tc programs
  --cgroup PATH        cgroup (v2) for cgroup programs (default: the cgroup v2 root)
  --pid PID            only this process, for uprobe and usdt programs
  --GLOBAL VALUE       set the object's global variable GLOBAL (.rodata/.data/.bss) before loading:
                       integers and enums --min_us 200 (hex 0x.., negative as --NAME=-1), bools
                       --NAME / --no-NAME, char arrays --NAME STRING. tsbpf load OBJECT.o --help
                       lists the object's globals with their C types and defaults
  --set NAME=VALUE     set a global variable by name (any name, also those taken by an option); repeatable
  --program NAME       load only this program; repeatable
  --btf FILE           relocate CO-RE against this BTF (raw BTF or an ELF with .BTF) instead of
                       /sys/kernel/btf/vmlinux
  --pin DIR            directory (in a bpffs) for maps pinned by name (default /sys/fs/bpf)
  --verbose            print the verifier log of each program, and stack traces of errors
  -h, --help           show this help (with OBJECT.o: also the object's globals)

Exit codes: 0 success, 1 runtime error (load, attach, kernel or I/O failure), 2 usage error.
Needs root, or CAP_BPF + CAP_PERFMON (CAP_NET_ADMIN for networking programs).
`;

function out(s = ''): void {
  process.stdout.write(s + '\n');
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n');
}

function parseValue(v: string): bigint | boolean | string {
  if (/^-?(0x[0-9a-f]+|\d+)$/i.test(v)) return v.startsWith('-') ? -BigInt(v.slice(1)) : BigInt(v);
  if (v === 'true' || v === 'false') return v === 'true';
  return v;
}

/** tsbpf load's own options; a global of the same name is set with --set. */
const LOAD_OPTIONS = {
  attach: { type: 'boolean' },
  iface: { type: 'string' },
  cgroup: { type: 'string' },
  pid: { type: 'string' },
  event: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  set: { type: 'string', multiple: true },
  program: { type: 'string', multiple: true },
  btf: { type: 'string' },
  pin: { type: 'string' },
  interval: { type: 'string' },
  count: { type: 'string' },
  cumulative: { type: 'boolean' },
  units: { type: 'string' },
  verbose: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;
const RESERVED = new Set(Object.keys(LOAD_OPTIONS));

/**
 * The object path among the arguments, found before parsing (the object's globals decide which flags exist):
 * the first non-option argument ending in .o, else the first non-option argument.
 */
function findObjectArg(argv: string[]): string | undefined {
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const name = a.slice(2);
      const o = (LOAD_OPTIONS as Record<string, { type: string }>)[name];
      if (o?.type === 'string') i++;
      continue;
    }
    if (a.startsWith('-') && a.length > 1) continue;
    positionals.push(a);
  }
  return positionals.find((p) => p.endsWith('.o')) ?? positionals[0];
}

function positiveNumber(s: string | undefined, what: string, integer: boolean): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!(s.trim() !== '' && Number.isFinite(n) && n > 0 && (!integer || Number.isInteger(n)))) {
    throw new UsageError(`${what} wants a positive ${integer ? 'integer' : 'number'}, got "${s}"`);
  }
  return n;
}

/** Is the bool global `name` set (true) in the spec? False when there is no such bool. */
function boolGlobal(spec: CollectionSpec, name: string): boolean {
  const v = spec.variables[name];
  if (!v || v.size !== 1) return false;
  try {
    return getVariable(spec, name)[0] !== 0;
  } catch {
    return false;
  }
}

async function load(argv: string[]): Promise<number> {
  const objArg = findObjectArg(argv);
  // Without an object there are no generated flags; --help alone prints the generic usage.
  const spec = objArg !== undefined ? loadCollectionSpec(objArg) : undefined;
  const flags: GlobalFlag[] = spec ? globalFlags(spec) : [];
  let parsed;
  try {
    parsed = parseArgs({
      args: normalizeBoolArgs(argv, flags, RESERVED),
      allowPositionals: true,
      options: { ...flagOptions(flags, RESERVED), ...LOAD_OPTIONS },
    });
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const avail = flags.filter((f) => !RESERVED.has(f.name)).map((f) => (f.kind === 'bool' ? `--${f.name}/--no-${f.name}` : `--${f.name}`));
      const what = spec ? `the globals of ${objArg} give ${avail.length ? avail.join(', ') : 'no flags'}` : 'no object given';
      throw new UsageError(`${(e as Error).message.split('.')[0]} (${what}; tsbpf load --help lists tsbpf's own options)`);
    }
    throw new UsageError((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(USAGE);
    if (spec && objArg) out(globalsHelp(objArg, flags, RESERVED));
    return 0;
  }
  if (positionals.length !== 1 || !spec) {
    process.stderr.write(positionals.length > 1 ? `tsbpf load: one object at a time, got ${positionals.join(' ')}\n\n${USAGE}` : USAGE);
    return 2;
  }
  const path = positionals[0];
  applyGlobalFlags(spec, flags, values as Record<string, unknown>, RESERVED);
  for (const s of values.set ?? []) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set wants NAME=VALUE, got "${s}"`);
    // An unknown name is a TsbpfError (exit 1, as before); a bad value a usage error.
    getVariable(spec, s.slice(0, eq));
    setGlobal(spec, s.slice(0, eq), parseValue(s.slice(eq + 1)), `--set ${s}`);
  }
  const interval = positiveNumber(values.interval, '--interval', false);
  const count = positiveNumber(values.count, '--count', true);
  if (count !== undefined && interval === undefined) throw new UsageError('--count needs --interval');
  if ((interval !== undefined || values.cumulative || values.units !== undefined) && !values.attach) {
    throw new UsageError('--interval, --count, --cumulative and --units go with --attach');
  }
  const units = values.units ?? (boolGlobal(spec, 'targ_ms') ? 'msecs' : 'usecs');
  // What a histogram's key is, for its header (`pid = 1451 sshd`): runqlat-style objects say it through
  // their targ_per_process / targ_per_thread / targ_per_pidns globals (the libbpf-tools convention), and then
  // every histogram is headed, even a single one. Otherwise the key is a `pid` when the value has a comm,
  // else a `key`, and a header is printed only when there are several keys or a comm.
  const keyLabel = boolGlobal(spec, 'targ_per_process') ? 'pid'
    : boolGlobal(spec, 'targ_per_thread') ? 'tid'
    : boolGlobal(spec, 'targ_per_pidns') ? 'pidns' : undefined;
  const events = parseEventArgs(values.event, spec);
  if (values.pid !== undefined && !/^\d+$/.test(values.pid)) throw new TypeError(`--pid wants a process id, got "${values.pid}"`);
  const attachOpts = {
    iface: values.iface,
    cgroup: values.cgroup,
    pid: values.pid === undefined ? undefined : Number(values.pid),
  };
  // With --attach --json, stdout carries only the records: everything else goes to stderr.
  const info = values.json && values.attach ? (s = ''): void => void process.stderr.write(s + '\n') : out;
  const coll = new Collection(spec, {
    programs: values.program,
    logLevel: values.verbose ? 1 : 0,
    kernelBtf: values.btf,
    pinPath: values.pin,
  });
  const links: Link[] = [];
  let stream: EventStream | undefined;
  let outBroken = false;
  let closed = false;
  const shutdown = (): void => {
    if (closed) return;
    closed = true;
    for (const l of links) l.close();
    stream?.close();
    coll.close();
  };
  try {
    info(`${path}: loaded ${Object.keys(coll.programs).length} program(s), ${Object.keys(coll.maps).length} map(s)`);
    info();
    const progRows = [['PROGRAM', 'TYPE', 'ID', 'XLATED', 'SECTION']];
    for (const p of Object.values(coll.programs)) {
      const pi = p.info();
      progRows.push([p.name, programTypeName(p.type).toLowerCase(), String(pi.id), `${pi.xlatedInsns} insns`, spec.programs[p.name].section]);
    }
    info(table(progRows));
    info();
    const mapRows = [['MAP', 'TYPE', 'KEY', 'VALUE', 'MAX ENTRIES']];
    for (const [name, m] of Object.entries(coll.maps)) {
      mapRows.push([name, mapTypeName(m.type).toLowerCase(), `${m.keySize}B`, `${m.valueSize}B`, String(m.maxEntries)]);
    }
    info(table(mapRows));
    if (values.verbose) {
      for (const p of Object.values(coll.programs)) {
        info(`\n--- verifier log: ${p.name} ---\n${p.verifierLog.trimEnd()}`);
      }
    }
    if (!values.attach) {
      shutdown();
      return 0;
    }
    info();
    // Readers first: a perf event array only takes records once its per-CPU entries are set.
    stream = new EventStream(coll, spec, {
      events,
      json: values.json === true,
      write: (s) => void (outBroken || process.stdout.write(s)),
      warn: (s) => void process.stderr.write(s + '\n'),
    });
    for (const src of stream.sources) info(`read   ${src.map} (${src.kind}) as ${src.type}`);
    // Maps of log2 histograms: printed every --interval, and on exit.
    const histMaps: { name: string; map: BpfMap; layout: HistLayout }[] = [];
    for (const [name, m] of Object.entries(coll.maps)) {
      const ms = spec.maps[name];
      if (!ms || ms.origin === 'data') continue;
      const layout = mapHistLayout(m, ms.valueType);
      if (layout) histMaps.push({ name, map: m, layout });
    }
    for (const h of histMaps) {
      info(`hist   ${h.name}: log2 histograms of ${h.layout.nslots} slots${h.layout.commLen ? ' with comm' : ''}, in ${units}`);
    }
    // The other plain maps as tables, then the writable globals: what an object leaves behind.
    const finalTables = (): string[] => {
      const tty = process.stdout.isTTY === true;
      const hist = new Set(histMaps.map((h) => h.name));
      const texts: string[] = [];
      for (const [name, m] of Object.entries(coll.maps)) {
        const ms = spec.maps[name];
        if (!ms || ms.origin === 'data' || name.startsWith('.') || hist.has(name) || isEventMapType(m.type) || !isTabular(m.type)) continue;
        texts.push(formatMap(m, mapTypeName(m.type).toLowerCase(), tty));
      }
      const g = formatGlobals(coll, spec.btf, tty);
      if (g) texts.push(g);
      return texts;
    };
    const write = (s: string): void => void (outBroken || process.stdout.write(s));
    const printHists = (): void => {
      const parts: string[] = [];
      const json: string[] = [];
      const time = new Date().toTimeString().slice(0, 8);
      for (const h of histMaps) {
        const entries = readHists(h.map, h.layout);
        if (values.json) {
          for (const e of entries) json.push(JSON.stringify({ time, map: h.name, key: keyText(e.key), ...(h.layout.commLen ? { comm: e.comm } : {}), unit: units, slots: e.slots }));
        } else {
          const label = keyLabel ?? (h.layout.commLen ? 'pid' : 'key');
          const text = entries.length
            ? formatHists(entries, units, label, keyLabel !== undefined)
            : formatHists([{ key: Buffer.alloc(0), slots: [], total: 0, comm: '' }], units, label); // header only
          parts.push((histMaps.length > 1 ? `${h.name}:\n` : '') + text);
        }
        if (!values.cumulative) clearHists(h.map, entries);
      }
      if (json.length) write(json.join('\n') + '\n');
      if (parts.length) write('\n' + parts.join('\n\n') + '\n');
    };
    // `syscall` programs have no hook: they run when user space says so. In an object made only of them,
    // --attach runs each once (BPF_PROG_TEST_RUN with a zeroed context), as `bpftool prog run` would, and
    // prints what it returned; what they computed is in the maps and globals printed below. Next to hooked
    // programs they are helpers that user space drives with its own arguments: left alone.
    let ran = 0;
    const onlySyscall = Object.values(coll.programs).every((p) => p.type === ProgramType.SYSCALL);
    for (const [name, p] of Object.entries(coll.programs)) {
      if (p.type !== ProgramType.SYSCALL) continue;
      if (!onlySyscall) {
        info(`skip   ${name}: a syscall program next to hooked ones; it runs when user space calls it`);
        continue;
      }
      try {
        const r = p.run({ ctx: syscallContext(spec, name) });
        ran++;
        info(`run    ${name} (syscall) → returned ${r.retval}`);
      } catch (e) {
        if (!(e instanceof TsbpfError)) throw e;
        info(`skip   ${name}: running it once failed: ${e.message}`);
      }
    }
    for (const [name, p] of Object.entries(coll.programs)) {
      if (p.type === ProgramType.SYSCALL) continue;
      const ps = spec.programs[name];
      const why = autoAttachSupport(ps, attachOpts);
      if (why) {
        info(`skip   ${name}: ${why}`);
        continue;
      }
      const got = autoAttach(p, ps, attachOpts);
      const list = Array.isArray(got) ? got : [got];
      links.push(...list);
      for (const l of list) info(`attach ${name} → ${l.kind} ${l.target}`);
      // An iterator's output is what it produces: print it once, now.
      for (const l of list) if (l instanceof IterLink) out((await l.text()).trimEnd());
    }
    if (links.length === 0 && ran > 0) {
      // Nothing waits for events: show what the runs left behind and exit.
      for (const text of finalTables()) out('\n' + text);
      shutdown();
      return 0;
    }
    if (links.length === 0) {
      info('nothing to attach');
      shutdown();
      return 1;
    }
    info(`\nAttached ${links.length} program(s). Hit Ctrl-C to detach and exit.`);
    if (!stream.empty && !values.json) out(['', ...stream.headers()].join('\n'));
    let failure: unknown;
    let removeHandlers = (): void => {};
    let stopTick = (): void => {};
    const why = await new Promise<string>((resolve) => {
      // Signal handlers don't keep Node's event loop alive: a timer does.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const onInt = () => done('SIGINT');
      const onTerm = () => done('SIGTERM');
      // A closed pipe (`tsbpf load ... | head`) ends the run like a signal; nothing more goes to stdout.
      const onOutError = (e: NodeJS.ErrnoException) => {
        outBroken = true;
        done(e.code === 'EPIPE' ? 'EPIPE' : `stdout: ${e.message}`);
      };
      let settled = false;
      function done(reason: string): void {
        if (settled) return;
        settled = true;
        clearInterval(keepAlive);
        stopTick();
        resolve(reason);
      }
      // Left installed (and ignoring repeats) until everything is closed: a signal sent twice, as
      // `timeout` does to the process and its group, must not kill us halfway through the cleanup.
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      removeHandlers = () => {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
      };
      process.stdout.on('error', onOutError);
      if (interval !== undefined && histMaps.length) {
        let printed = 0;
        const tick = setInterval(() => {
          try {
            printHists();
          } catch (e) {
            failure = e;
            done('error');
            return;
          }
          if (count !== undefined && ++printed >= count) done('count');
        }, interval * 1000);
        stopTick = () => clearInterval(tick);
      }
      stream!.start((e) => {
        failure = e;
        done('error');
      });
    });
    const n = links.length;
    // Detach first so no new record arrives, then print what is left in the rings, then close everything.
    for (const l of links) l.close();
    await stream.stop().catch((e: unknown) => {
      failure ??= e;
    });
    // What the maps hold at the end: the histograms (unless --count printed the last already), then the
    // other plain maps as tables.
    try {
      if (why !== 'count' && why !== 'error' && histMaps.length) printHists();
      if (!outBroken) for (const text of finalTables()) info('\n' + text);
    } catch (e) {
      failure ??= e;
    }
    shutdown();
    // The readers' waiter thread closes its own fds once it has exited.
    await waitersIdle();
    const left = ownedFdCount();
    removeHandlers();
    if (failure !== undefined) {
      process.stderr.write(`tsbpf: reading maps or events failed: ${failure instanceof Error ? failure.message : String(failure)}\n`);
    }
    const say = outBroken ? (s = ''): void => void process.stderr.write(s + '\n') : info;
    say(`\n${why}: detaching`);
    say(`detached ${n} link(s), closed all maps and programs (${left} tsbpf fd(s) still open)`);
    return left === 0 && failure === undefined ? 0 : 1;
  } catch (e) {
    shutdown();
    throw e;
  }
}

/**
 * A zeroed context for a test run of a `syscall` program: as large as the struct its first argument points
 * to (from the program's BTF prototype), since the kernel refuses a context shorter than what the program
 * reads. Undefined when the program takes no argument or the object has no BTF.
 */
function syscallContext(spec: CollectionSpec, name: string): Buffer | undefined {
  const btf = spec.btf;
  const fn = btf?.tryFindType(name, 'func');
  if (!btf || !fn || fn.kind !== 'func') return undefined;
  try {
    const proto = btf.type(fn.type);
    if (proto.kind !== 'func_proto' || proto.params.length === 0) return undefined;
    const arg = btf.resolve(proto.params[0]!.type);
    if (arg.kind !== 'ptr') return undefined;
    const size = btf.sizeof(arg.type);
    return size > 0 && size <= 0xffff ? Buffer.alloc(size) : undefined;
  } catch {
    return undefined;
  }
}

function runUsage(): string {
  const names = Object.keys(EXAMPLES);
  const w = Math.max(...names.map((n) => n.length));
  return `Usage: tsbpf run NAME [args]

Run one of the example programs bundled with tsbpf (tsbpf run NAME --help for its options):

${names.map((n) => `  ${n.padEnd(w)}  ${EXAMPLES[n].summary}`).join('\n')}
`;
}

async function run(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '-h' || name === '--help') {
    out(runUsage());
    return 0;
  }
  if (name === undefined) {
    process.stderr.write(runUsage());
    return 2;
  }
  const ex = Object.prototype.hasOwnProperty.call(EXAMPLES, name) ? EXAMPLES[name] : undefined;
  if (!ex) {
    process.stderr.write(`tsbpf run: unknown example "${name}"\n\n${runUsage()}`);
    return 2;
  }
  return (await ex.load()).main(rest);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'load':
      return load(rest);
    case 'run':
      return run(rest);
    case 'btf':
      return btfCommand(rest);
    case 'inspect':
      return inspectCommand(rest);
    case 'prog':
      return progCommand(rest);
    case 'map':
      return mapCommand(rest);
    case 'link':
      return linkCommand(rest);
    case 'feature':
      return featureCommand(rest);
    case 'gen':
      return genCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      out(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`tsbpf: unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}

const verbose = process.argv.includes('--verbose');

/** One clear line (the error) and a hint; the stack only with --verbose. Returns the exit code. */
function report(e: unknown): number {
  const say = (msg: string, hint?: string): void => {
    process.stderr.write(`tsbpf: ${msg}\n${hint ? `hint: ${hint}\n` : ''}`);
    if (verbose && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
  };
  const code = (e as { code?: string } | undefined)?.code;
  if (e instanceof UsageError || e instanceof TypeError || e instanceof RangeError || code?.startsWith?.('ERR_PARSE_ARGS')) {
    say((e as Error).message, 'tsbpf --help (or tsbpf load OBJECT.o --help) lists the options');
    return 2;
  }
  if (e instanceof SyscallError) {
    const missing = e.missingCapabilities;
    if (missing) {
      const what = e.cmd ? `${e.syscall}(${e.cmd})` : e.syscall;
      say(
        `permission denied: ${what} needs ${missing.join(' and ')}, which this process lacks${process.geteuid?.() === 0 ? '' : ' (not root)'}`,
        `run as root, or grant the capabilities (e.g. sudo setcap cap_bpf,cap_perfmon+ep "$(command -v node)"); CAP_SYS_ADMIN also covers them`,
      );
      return 1;
    }
  }
  if (e instanceof VerifierError) {
    say(e.message, verbose ? undefined : 'tsbpf load OBJECT.o --verbose prints the whole verifier log');
    return 1;
  }
  if (e instanceof TsbpfError || code === 'ENOENT' || code === 'EACCES' || code === 'EISDIR') {
    say((e as Error).message);
    return 1;
  }
  say(`unexpected error: ${e instanceof Error ? e.message : String(e)}`, verbose ? undefined : 'run with --verbose for the stack trace');
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = report(e);
  },
);
