// `tsbpf feature [--json] [--all-helpers]`: what the running kernel supports (program types, map types,
// helpers per program type, link and attach types), probed by src/features/probe.ts.

import { parseArgs } from 'node:util';
import { closeProbeResources, probeKernelFeatures } from '../features/probe.js';
import { GENERATED_FROM_KERNEL } from '../syscall/kernel-defs.generated.js';
import { release } from 'node:os';

export const FEATURE_USAGE = `Usage: tsbpf feature [--json] [--all-helpers]

Probe the running kernel: program types (by loading a minimal program), map types (by creating a tiny
map), the helpers each main program type may call (by loading a call to each), link and attach types
(from the kernel's BTF). Nothing stays loaded.
  --all-helpers   probe helpers for every program type that loads without an attach target
  --json          one JSON document
`;

function columns(items: string[], width = 100): string {
  if (!items.length) return '  (none)';
  const w = Math.max(...items.map((s) => s.length)) + 2;
  const per = Math.max(1, Math.floor((width - 2) / w));
  const rows: string[] = [];
  for (let i = 0; i < items.length; i += per) rows.push('  ' + items.slice(i, i + per).map((s) => s.padEnd(w)).join('').trimEnd());
  return rows.join('\n');
}

export async function featureCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, 'all-helpers': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(FEATURE_USAGE);
    return 0;
  }
  // `tsbpf feature probe [kernel]` reads like bpftool's command: accept it.
  const pos = positionals.filter((p) => p !== 'probe' && p !== 'kernel');
  if (pos.length) {
    process.stderr.write(FEATURE_USAGE);
    return 2;
  }
  let r;
  try {
    r = probeKernelFeatures(values['all-helpers'] ? { helperProgTypes: 'all' } : {});
  } finally {
    closeProbeResources();
  }
  const kernel = release();
  if (values.json) {
    process.stdout.write(JSON.stringify({ kernel, definitionsFrom: GENERATED_FROM_KERNEL, ...r }) + '\n');
    return 0;
  }
  const yes = (o: Record<string, boolean>) => Object.entries(o).filter(([, v]) => v).map(([k]) => k);
  const no = (o: Record<string, boolean>) => Object.entries(o).filter(([, v]) => !v).map(([k]) => k);
  const out: string[] = [];
  out.push(`Kernel ${kernel} (tsbpf definitions from ${GENERATED_FROM_KERNEL})`, '');
  out.push(`Program types: ${yes(r.programTypes).length} available`, columns(yes(r.programTypes)));
  if (no(r.programTypes).length) out.push('  not available: ' + no(r.programTypes).join(', '));
  out.push('', `Map types: ${yes(r.mapTypes).length} available`, columns(yes(r.mapTypes)));
  if (no(r.mapTypes).length) out.push('  not available: ' + no(r.mapTypes).join(', '));
  out.push('', `Link types (${r.typesSource === 'kernel-btf' ? 'defined by the kernel' : 'known to tsbpf'}):`, columns(r.linkTypes));
  out.push('', `Attach types (${r.typesSource === 'kernel-btf' ? 'defined by the kernel' : 'known to tsbpf'}):`, columns(r.attachTypes));
  for (const [type, helpers] of Object.entries(r.helpers)) {
    out.push('', `Helpers for ${type} programs: ${helpers.length}`, columns(helpers));
  }
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
