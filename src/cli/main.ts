#!/usr/bin/env node
// The `tsbpf` command. A client of the public API only.

import { parseArgs } from 'node:util';
import { Collection } from '../collection/collection.js';
import { loadCollectionSpec } from '../elf/index.js';
import { setVariable } from '../elf/variables.js';
import { TsbpfError } from '../errors.js';
import { autoAttach, autoAttachSupport } from '../links/auto.js';
import type { Link } from '../links/link.js';
import { mapTypeName } from '../maps/map.js';
import { programTypeName, VerifierError } from '../programs/program.js';
import { ownedFdCount } from '../syscall/fd.js';

const USAGE = `Usage: tsbpf load OBJECT.o [options]

Load every map and program of a clang-compiled BPF object and print them.

Options:
  --attach             attach programs by their section name (tp/, raw_tp/, tp_btf/, ...)
                       and keep running until Ctrl-C (SIGINT) or SIGTERM
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
  const coll = new Collection(spec, {
    programs: values.program,
    logLevel: values.verbose ? 1 : 0,
    kernelBtf: values.btf,
    pinPath: values.pin,
  });
  const links: Link[] = [];
  let closed = false;
  const shutdown = (): void => {
    if (closed) return;
    closed = true;
    for (const l of links) l.close();
    coll.close();
  };
  try {
    out(`${path}: loaded ${Object.keys(coll.programs).length} program(s), ${Object.keys(coll.maps).length} map(s)`);
    out();
    const progRows = [['PROGRAM', 'TYPE', 'ID', 'XLATED', 'SECTION']];
    for (const p of Object.values(coll.programs)) {
      const info = p.info();
      progRows.push([p.name, programTypeName(p.type).toLowerCase(), String(info.id), `${info.xlatedInsns} insns`, spec.programs[p.name].section]);
    }
    out(table(progRows));
    out();
    const mapRows = [['MAP', 'TYPE', 'KEY', 'VALUE', 'MAX ENTRIES']];
    for (const [name, m] of Object.entries(coll.maps)) {
      mapRows.push([name, mapTypeName(m.type).toLowerCase(), `${m.keySize}B`, `${m.valueSize}B`, String(m.maxEntries)]);
    }
    out(table(mapRows));
    if (values.verbose) {
      for (const p of Object.values(coll.programs)) {
        out(`\n--- verifier log: ${p.name} ---\n${p.verifierLog.trimEnd()}`);
      }
    }
    if (!values.attach) {
      shutdown();
      return 0;
    }
    out();
    for (const [name, p] of Object.entries(coll.programs)) {
      const ps = spec.programs[name];
      const why = autoAttachSupport(ps);
      if (why) {
        out(`skip   ${name}: ${why}`);
        continue;
      }
      const l = autoAttach(p, ps);
      links.push(l);
      out(`attach ${name} → ${l.kind} ${l.target}`);
    }
    if (links.length === 0) {
      out('nothing to attach');
      shutdown();
      return 1;
    }
    out(`\nAttached ${links.length} program(s). Hit Ctrl-C to detach and exit.`);
    await new Promise<void>((resolve) => {
      // Signal handlers don't keep Node's event loop alive: a timer does.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const done = (sig: string) => {
        clearInterval(keepAlive);
        out(`\n${sig}: detaching`);
        resolve();
      };
      process.once('SIGINT', () => done('SIGINT'));
      process.once('SIGTERM', () => done('SIGTERM'));
    });
    const n = links.length;
    shutdown();
    const left = ownedFdCount();
    out(`detached ${n} link(s), closed all maps and programs (${left} tsbpf fd(s) still open)`);
    return left === 0 ? 0 : 1;
  } catch (e) {
    shutdown();
    throw e;
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'load':
      return load(rest);
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
