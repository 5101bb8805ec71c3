#!/usr/bin/env node
// The `tsbpf` command. A client of the public API only.

import { parseArgs } from 'node:util';
import { Collection } from '../collection/collection.js';
import { loadCollectionSpec } from '../elf/index.js';
import { setVariable } from '../elf/variables.js';
import { TsbpfError } from '../errors.js';
import { autoAttach, autoAttachSupport } from '../links/auto.js';
import type { Link } from '../links/link.js';
import { IterLink } from '../links/iter.js';
import { mapTypeName } from '../maps/map.js';
import { programTypeName, VerifierError } from '../programs/program.js';
import { ownedFdCount } from '../syscall/fd.js';
import { waitersIdle } from '../ringbuf/index.js';
import { EventStream, parseEventArgs } from './events.js';
import { EXAMPLES } from '../examples/index.js';
import { btfCommand } from './btf.js';

const USAGE = `Usage: tsbpf load OBJECT.o [options]
       tsbpf run NAME [args]       run a bundled example program (tsbpf run --help lists them)
       tsbpf btf dump [FILE] [--format c|json]   print BTF as a vmlinux.h or JSON

Load every map and program of a clang-compiled BPF object and print them.

Options:
  --attach             attach programs by their section name (tp/, raw_tp/, tp_btf/, ...)
                       and keep running until Ctrl-C (SIGINT) or SIGTERM. Meanwhile the records
                       of every ring buffer and perf event array are printed, one line each:
                       TIME (HH:MM:SS) then one column per member of the record's struct (MAP
                       too when there are several such maps); lost perf samples go to stderr
  --event MAP=TYPE     decode the records of MAP as BTF struct TYPE; repeatable. Default: the
                       object's "struct event" when it fits the records, else raw bytes in hex
  --json               print the records as JSON lines ({"time", "map", members...}; 64-bit
                       numbers beyond 2^53 as strings); everything else goes to stderr
  --iface NAME         network interface for xdp and tc programs
  --cgroup PATH        cgroup (v2) for cgroup programs (default: the cgroup v2 root)
  --pid PID            only this process, for uprobe and usdt programs
  --set NAME=VALUE     set a global variable (.rodata/.data/.bss) before loading; repeatable
  --program NAME       load only this program; repeatable
  --btf FILE           relocate CO-RE against this BTF (raw BTF or an ELF with .BTF) instead of
                       /sys/kernel/btf/vmlinux
  --pin DIR            directory (in a bpffs) for maps pinned by name (default /sys/fs/bpf)
  --verbose            print the verifier log of each program
  -h, --help           show this help
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

async function load(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
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
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const path = positionals[0];
  const spec = loadCollectionSpec(path);
  for (const s of values.set ?? []) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new TsbpfError(`--set wants NAME=VALUE, got "${s}"`);
    setVariable(spec, s.slice(0, eq), parseValue(s.slice(eq + 1)));
  }
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
    for (const [name, p] of Object.entries(coll.programs)) {
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
    if (links.length === 0) {
      info('nothing to attach');
      shutdown();
      return 1;
    }
    info(`\nAttached ${links.length} program(s). Hit Ctrl-C to detach and exit.`);
    if (!stream.empty && !values.json) out(['', ...stream.headers()].join('\n'));
    let failure: unknown;
    let removeHandlers = (): void => {};
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
    shutdown();
    // The readers' waiter thread closes its own fds once it has exited.
    await waitersIdle();
    const left = ownedFdCount();
    removeHandlers();
    if (failure !== undefined) {
      process.stderr.write(`tsbpf: reading events failed: ${failure instanceof Error ? failure.message : String(failure)}\n`);
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

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof VerifierError) {
      process.stderr.write(`tsbpf: ${e.message}\n`);
    } else if (e instanceof TsbpfError) {
      process.stderr.write(`tsbpf: ${e.message}\n`);
    } else if (e instanceof Error && (e as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write(`tsbpf: ${e.message}\n`);
    } else if (e instanceof TypeError || (e instanceof Error && e.name === 'ParseArgsError') || (e as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS')) {
      process.stderr.write(`tsbpf: ${(e as Error).message}\n\n${USAGE}`);
      process.exitCode = 2;
      return;
    } else {
      process.stderr.write(`tsbpf: unexpected error: ${e instanceof Error ? e.stack : String(e)}\n`);
    }
    process.exitCode = 1;
  },
);
