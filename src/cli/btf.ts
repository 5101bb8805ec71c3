// `tsbpf btf dump [FILE] [--format c|json] [--type NAME ...]`: kernel BTF (default), a raw BTF file, a kernel
// module's BTF (split on vmlinux) or the .BTF of an ELF object, as a compilable C header or as JSON.

import { parseArgs } from 'node:util';
import { basename } from 'node:path';
import { dumpBtfAsC, dumpBtfAsJson } from '../btf/cdump.js';
import { loadBtfFile, loadKernelBtf } from '../btf/kernel.js';

export const BTF_USAGE = `Usage: tsbpf btf dump [FILE] [--format c|json] [--type NAME ...]

Print BTF as a C header (a vmlinux.h for CO-RE programs) or as JSON.
  FILE              /sys/kernel/btf/vmlinux (default), a module's /sys/kernel/btf/NAME (read on top of
                    vmlinux), a raw BTF file, or an ELF object with a .BTF section
  --format c|json   default c
  --type NAME       only this type and what it needs (C only); repeatable
`;

/** Write all of `s` to stdout and resolve once it is flushed (a pipe may take the header's MBs slowly). */
function write(s: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(s, (err) => (err ? reject(err) : resolve()));
  });
}

export async function btfCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help') {
    process.stdout.write(BTF_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'dump') {
    process.stderr.write(`tsbpf btf: unknown subcommand "${sub}"\n\n${BTF_USAGE}`);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      format: { type: 'string', default: 'c' },
      type: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(BTF_USAGE);
    return 0;
  }
  if (positionals.length > 1) throw new TypeError('tsbpf btf dump takes at most one FILE');
  if (values.format !== 'c' && values.format !== 'json') throw new TypeError(`--format must be c or json, got "${values.format}"`);
  const file = positionals[0];
  let btf;
  if (file === undefined || file === '/sys/kernel/btf/vmlinux') {
    btf = loadKernelBtf();
  } else if (file.startsWith('/sys/kernel/btf/')) {
    btf = loadBtfFile(file, { base: loadKernelBtf() });
  } else {
    btf = loadBtfFile(file);
  }
  if (values.format === 'json') {
    await write(JSON.stringify(dumpBtfAsJson(btf)) + '\n');
  } else {
    const guard = file === undefined || basename(file) === 'vmlinux' ? undefined : `__${basename(file).replace(/\W/g, '_').toUpperCase()}_H__`;
    await write(dumpBtfAsC(btf, { types: values.type, ...(guard ? { guard } : {}) }));
  }
  return 0;
}
