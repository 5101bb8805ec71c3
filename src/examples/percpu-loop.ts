// `tsbpf run percpu-loop`: a per-CPU map and bpf_loop(), driven by BPF_PROG_TEST_RUN. An example of the
// public API only: set a .rodata global, load bpf/percpu_loop.o, test-run its raw_tp program on each online
// CPU in turn (no attaching: the kernel runs it right now, on the CPU we name), then read the per-CPU array
// (one value per possible CPU, decoded through BTF) and add the CPUs up.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Collection, loadCollectionSpec, ownedFdCount, setVariable } from '../index.js';

export const USAGE = `Usage: tsbpf run percpu-loop [-n LOOPS] [-r RUNS]

Load bpf/percpu_loop.o and test-run its program RUNS times on each online CPU (BPF_PROG_TEST_RUN with
BPF_F_TEST_RUN_ON_CPU). Each run calls bpf_loop() LOOPS times, counting into that CPU's slot of a per-CPU
array. Prints one row per CPU (runs, loop iterations, sum of the loop indexes) and the totals, checked
against what was asked.

Options:
  -n, --loops N        bpf_loop iterations per run (default 1000, at most 8388608)
  -r, --runs N         test runs per CPU (default 10)
  -h, --help           show this help
`;

/** struct counters of bpf/percpu_loop.c, as the map's BTF value type decodes it. */
interface Counters {
  runs: bigint;
  iterations: bigint;
  sum: bigint;
  last_cpu: number;
}

function objectPath(): string {
  const dir = process.env.TSBPF_BPF_DIR;
  if (dir && existsSync(join(dir, 'percpu_loop.o'))) return join(dir, 'percpu_loop.o');
  return fileURLToPath(new URL('../../bpf/percpu_loop.o', import.meta.url));
}

/** Online CPUs, from the kernel's list ("0-3,6"): a per-CPU map has a slot for every *possible* CPU. */
function onlineCpus(): number[] {
  const out: number[] = [];
  for (const part of readFileSync('/sys/devices/system/cpu/online', 'utf8').trim().split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a!; c <= (b ?? a!); c++) out.push(c);
  }
  return out;
}

function usageError(msg: string): number {
  process.stderr.write(`percpu-loop: ${msg}\n\n${USAGE}`);
  return 2;
}

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        loops: { type: 'string', short: 'n' },
        runs: { type: 'string', short: 'r' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    return usageError((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const loops = Number(values.loops ?? 1000);
  const runs = Number(values.runs ?? 10);
  // bpf_loop() refuses more than 1 << 23 iterations (-E2BIG).
  if (!Number.isInteger(loops) || loops < 0 || loops > 1 << 23) return usageError(`invalid loop count "${values.loops}"`);
  if (!Number.isInteger(runs) || runs <= 0 || runs > 1_000_000) return usageError(`invalid run count "${values.runs}"`);

  const spec = loadCollectionSpec(objectPath());
  setVariable(spec, 'nr_loops', loops); // const volatile u32 nr_loops: part of .rodata, fixed at load

  {
    using coll = new Collection(spec); // closed (maps, program) when the block ends
    const prog = coll.programs.run_loop;
    const cpus = onlineCpus();
    let elapsedNs = 0;
    for (const cpu of cpus) {
      for (let i = 0; i < runs; i++) {
        // `cpu` makes the kernel run the program on that CPU (raw_tp programs only); retval is what the
        // program returned: bpf_loop's count of iterations done.
        const t0 = process.hrtime.bigint();
        const r = prog.run({ cpu });
        elapsedNs += Number(process.hrtime.bigint() - t0); // the kernel reports no duration for raw_tp runs
        if (r.retval !== loops) throw new Error(`run on CPU ${cpu}: bpf_loop did ${r.retval} iterations, not ${loops}`);
      }
    }

    // A per-CPU map read from user space: one value per possible CPU, here decoded through BTF.
    const perCpu = coll.maps.counters.get(0) as Counters[];
    const rows = [['CPU', 'RUNS', 'ITERATIONS', 'SUM']];
    const total = { runs: 0n, iterations: 0n, sum: 0n };
    perCpu.forEach((c, cpu) => {
      if (c.runs === 0n && !cpus.includes(cpu)) return; // offline, never ran
      rows.push([String(cpu), String(c.runs), String(c.iterations), String(c.sum)]);
      total.runs += c.runs;
      total.iterations += c.iterations;
      total.sum += c.sum;
      if (c.runs > 0n && c.last_cpu !== cpu) throw new Error(`slot of CPU ${cpu} was written on CPU ${c.last_cpu}`);
    });
    rows.push(['total', String(total.runs), String(total.iterations), String(total.sum)]);
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ');
    process.stdout.write(`bpf_loop(${loops}) x ${runs} run(s) on each of ${cpus.length} online CPU(s)\n\n`);
    process.stdout.write(rows.map(line).join('\n') + '\n\n');

    // What the counters must hold: every run does `loops` iterations, and adds 0 + 1 + ... + (loops - 1).
    const n = BigInt(cpus.length * runs);
    const want = { runs: n, iterations: n * BigInt(loops), sum: (n * BigInt(loops) * BigInt(loops - 1)) / 2n };
    const ok = total.runs === want.runs && total.iterations === want.iterations && total.sum === want.sum;
    const avg = elapsedNs / (cpus.length * runs);
    process.stdout.write(`${ok ? 'ok' : 'MISMATCH'}: expected ${want.runs} runs, ${want.iterations} iterations, sum ${want.sum}; ` +
      `${(avg / 1000).toFixed(1)} us per run, system call included\n`);
    if (!ok) return 1;
  }
  return ownedFdCount() === 0 ? 0 : 1;
}
