import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, obj, childEnv } from './helpers/env.js';
import { loadCollectionSpec } from '../src/elf/index.js';
import { describeCoreRelo, inspectCommand, inspectObject } from '../src/cli/inspect.js';

// The subcommand's module run from source with the same TypeScript loader tap gave this process (the
// `tsbpf` entry point wires `inspect` to inspectCommand).
const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');
const RUNNER = `import { inspectCommand } from ${JSON.stringify(join(ROOT, 'src', 'cli', 'inspect.ts'))}; process.exitCode = await inspectCommand(process.argv.slice(1));`;

function inspect(args: string[]) {
  return spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', RUNNER, ...args], { encoding: 'utf8', timeout: 180_000, maxBuffer: 1 << 26, env: childEnv, cwd: ROOT });
}

type Row = Record<string, unknown>;

t.test('inspect loader.o --json: programs, maps, globals with values, relocations, disassembly, BTF', (t) => {
  const r = inspect([obj('loader.o'), '--json', '--relocs', '--disasm', '--btf']);
  t.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Record<string, Row[] | unknown>;
  t.equal(j.object, 'loader');
  t.equal(j.license, 'GPL');
  const spec = loadCollectionSpec(obj('loader.o'));
  const progs = j.programs as Row[];
  t.same(progs.map((p) => p.name), Object.keys(spec.programs));
  t.match(progs.find((p) => p.name === 'run_all'), { section: 'syscall', type: 'syscall', insns: spec.programs.run_all.instructions.length / 8 });
  t.match(progs.find((p) => p.name === 'xdp_count'), { section: 'xdp', type: 'xdp' });
  t.ok((progs.find((p) => p.name === 'run_all')!.calls as string[]).includes('add_mul'), 'bpf-to-bpf callees listed');
  t.ok((j.subprograms as Row[]).some((f) => f.name === 'global_helper' && f.global === true));
  const maps = j.maps as Row[];
  t.match(maps.find((m) => m.name === 'counts'), { type: 'hash', keySize: 4, valueSize: 8, keyType: 'u32', valueType: 'u64', maxEntries: 1024, pinning: 'none' });
  t.match(maps.find((m) => m.name === 'percpu'), { type: 'percpu_array', maxEntries: 4 });
  const g = Object.fromEntries((j.globals as Row[]).map((x) => [x.name, x]));
  t.match(g.multiplier, { section: '.rodata', value: 1, readonly: true });
  t.match(g.data_init, { section: '.data', value: 7, readonly: false });
  t.match(g.result, { section: '.bss', value: 0 });
  t.ok((j.sections as Row[]).some((s) => s.name === '.BTF.ext'), 'ELF sections listed');
  const relocs = (j.relocations as Row[]).find((f) => f.function === 'run_all')!.relocations as Row[];
  t.ok(relocs.some((x) => x.kind === 'call' && x.target === 'call add_mul'));
  t.ok(relocs.some((x) => x.kind === 'func' && x.target === 'func loop_cb'), 'bpf_loop callback reference');
  t.ok(relocs.some((x) => x.kind === 'map' && x.target === 'map counts'));
  t.ok(relocs.some((x) => x.kind === 'mapValue' && /\.bss\+\d+ \((result|loop_sum|loop_iters)\)/.test(String(x.target))), 'global data references name the variable');
  const dis = (j.disasm as Row[]).find((f) => f.function === 'run_all')!.lines as string[];
  t.ok(dis.some((l) => /^\s+\d+: \(85\) call bpf_map_lookup_elem#1$/.test(l)), 'helper calls by name');
  t.ok(dis.some((l) => /\(18\) r\d = map\[counts\]$/.test(l)), 'map references by name');
  t.ok(dis.some((l) => /\(85\) call pc[+-]\d+#add_mul$/.test(l)), 'subprogram calls by name');
  t.ok(dis.some((l) => /\(18\) r\d = func\[loop_cb\]$/.test(l)), 'callback references by name');
  t.ok(dis.some((l) => /^; .* @ loader\.c:\d+:\d+$/.test(l)), 'source lines from line_info interleaved');
  t.ok((j.btfTypes as string[]).some((l) => /^\[\d+\] DATASEC '\.bss' size=16/.test(l)), 'BTF types listed');
  t.same(inspectObject(obj('loader.o')).programs, j.programs, 'the command prints what inspectObject() returns');
  t.end();
});

t.test('inspect runqslower.o: globals with their values, CO-RE records, disassembly with jump targets', (t) => {
  const r = inspect([obj('runqslower.o'), '--relocs', '--disasm']);
  t.equal(r.status, 0, r.stderr);
  const out = r.stdout;
  t.match(out, /^PROGRAMS\n.*\non_wakeup\s+tp_btf\/sched_wakeup\s+tracing\s+trace_raw_tp\s+sched_wakeup\s+\d+/m);
  t.match(out, /^min_us\s+\.rodata\s+0\s+const volatile __u64 \(const\)\s+10000$/m, 'a .rodata global and its initial value');
  t.match(out, /^events\s+perf_event_array\s+4B\s+4B/m);
  t.match(out, /^start\s+hash\s+4B \(__u32\)\s+8B \(__u64\)\s+10240/m, 'map key/value BTF types');
  t.match(out, /insn\s+\d+\s+core\s+field_byte_offset\s+struct task_struct\s+0:\d+\s+struct task_struct\.pid$/m, 'CO-RE record: kind, type, access string, field');
  t.match(out, /core\s+field_exists\s+struct task_struct\s+0:\d+\s+struct task_struct\.__state$/m);
  t.match(out, /core\s+field_byte_offset\s+struct task_struct___pre514\s+0:0\s+struct task_struct___pre514\.state$/m, 'flavored type');
  t.match(out, /^DISASSEMBLY on_switch \(tp_btf\/sched_switch\):$/m);
  t.match(out, /\(85\) call bpf_perf_event_output#25$/m);
  t.match(out, /\(18\) r\d = map\[\.rodata\]\+0 <min_us>$/m, 'global data by variable name');
  const jumps = [...out.matchAll(/^\s+(\d+): \([0-9a-f]{2}\) (?:if .* )?goto pc([+-]\d+)\s+; -> (\d+)$/gm)];
  t.ok(jumps.length > 10, `${jumps.length} jumps`);
  t.ok(jumps.every((m) => Number(m[1]) + Number(m[2]) + 1 === Number(m[3])), 'each jump names its target');
  t.end();
});

t.test('CO-RE access strings resolve to fields for every relocation of the CO-RE objects', (t) => {
  for (const o of ['runqslower.o', 'runqlat.o', 'core_kernel.o']) {
    const spec = loadCollectionSpec(obj(o));
    for (const f of Object.values(spec.functions)) {
      for (const r of f.coreRelos) {
        const d = describeCoreRelo(spec.btf, r);
        t.notMatch(d, /\?|type#/, `${o} ${f.name} insn ${r.insnOff}: ${d}`);
      }
    }
  }
  t.end();
});

t.test('inspect without an object is a usage error', async (t) => {
  const write = process.stderr.write;
  let err = '';
  process.stderr.write = ((s: string) => ((err += s), true)) as typeof process.stderr.write;
  try {
    t.equal(await inspectCommand([]), 2);
  } finally {
    process.stderr.write = write;
  }
  t.match(err, /Usage: tsbpf inspect/);
});
