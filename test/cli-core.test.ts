// Issue 7, acceptance 5: `tsbpf load OBJ --attach` of every CO-RE object in bpf/ runs and shows its data,
// with no JS written. The objects are found, not listed: any object in bpf/ with a CO-RE relocation is
// covered, so a new one without an entry below fails this test until someone says what it should show.
// All children start at once, up front (each spends seconds compiling TypeScript).
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadCollectionSpec } from '../src/index.js';
import { ROOT, obj } from './helpers/env.js';
import { startCli, makeLoad, type Cli } from './helpers/cli.js';
import { compilers, buildTarget, Target } from './helpers/uprobe-target.js';

t.setTimeout(200_000);

interface Case {
  /** Extra arguments after `load OBJ --attach`. */
  args?: string[];
  /** Waits for events (SIGINT ends it) or exits by itself (only `syscall` programs, each run once). */
  waits: boolean;
  /** What the data it shows looks like. */
  shows: RegExp[];
  /** Make the object see something once it is attached. */
  poke?: () => Promise<void>;
}

/** Two seconds of run-queue traffic: busy loops and short-lived children. */
async function schedule(): Promise<void> {
  const stop = makeLoad();
  await new Promise((r) => setTimeout(r, 2000));
  stop();
}

// A process that calls libc's atoi when asked (the uprobe tests' native fixture).
const ccs = compilers();
const built = ccs.length ? buildTarget(ccs[0]!) : undefined;
t.teardown(() => built?.cleanup());
async function callAtoi(): Promise<void> {
  if (!built) throw new Error('neither cc nor clang-19 is installed: cannot compile the native fixture');
  const p = new Target(built.path);
  try {
    await p.send('libc 1234');
  } finally {
    await p.quit();
  }
}

const CASES: Record<string, Case> = {
  // Fixtures of the CO-RE tests: `syscall` programs, run once; each returns 0 or the line of a failed check.
  'core_kernel.o': { waits: false, shows: [/^run {4}fields \(syscall\) → returned \d+$/m, /^run {4}enums \(syscall\) → returned 0$/m] },
  // Relocated against its own target BTF, as the object is meant to be (core_target.o has no programs).
  'core_self.o': {
    args: ['--btf', obj('core_target.o')],
    waits: false,
    shows: [/^run {4}self_fields \(syscall\) → returned 0$/m, /^globals \(3 writable variables\)$/m, /^ {2}rec_data \{.*"hi":13107.*"color":"CORE_BLUE_real"/m],
  },
  'runqlat.o': { args: ['--interval', '1'], waits: true, shows: [/^ {5}usecs {15}: count {4}distribution$/m, /^ +\d+ -> \d+ +: \d+ +\|\*+ *\|$/m], poke: schedule },
  'runqslower.o': { args: ['--min_us', '1'], waits: true, shows: [/^TIME +TASK +PREV_TASK +DELTA_US +PID +PREV_PID$/m, /^\d\d:\d\d:\d\d \S+/m], poke: schedule },
  'sock_test.o': { waits: true, shows: [/^attach steer → sk_lookup /m, /^globals \(\d+ writable variables\)$/m] },
  // The task iterator prints every process (the CLI's own node among them); raw_tp/sys_enter records the CPU.
  'tracing_test.o': { waits: true, shows: [/^attach dump_task → iter task$/m, /^\d+ node$/m, /^ {2}ran_on_cpu \d+$/m] },
  'uprobe_test.o': { waits: true, shows: [/^attach on_atoi → uprobe \S+libc\.so\.6:atoi$/m, /^ {2}atoi_calls [1-9]\d*$/m, /^ {2}atoi_arg 1234$/m], poke: callAtoi },
};

const coreObjects = readdirSync(join(ROOT, 'bpf'))
  .filter((f) => f.endsWith('.o'))
  .filter((f) => Object.values(loadCollectionSpec(obj(f)).functions ?? {}).some((fn) => fn.coreRelos.length > 0))
  .sort();

t.test('every CO-RE object in bpf/ has a case', (t) => {
  t.ok(coreObjects.length >= 5, `found ${coreObjects.join(', ')}`);
  t.same(coreObjects.filter((f) => !CASES[f]), [], 'objects with CO-RE relocations and no case here');
  t.end();
});

const running = new Map<string, Cli>();
for (const f of coreObjects) {
  const c = CASES[f];
  if (c) running.set(f, startCli(['load', obj(f), '--attach', ...(c.args ?? [])]));
}
t.teardown(() => {
  for (const cli of running.values()) cli.child.kill('SIGKILL');
});

for (const [f, cli] of running) {
  const c = CASES[f]!;
  t.test(`tsbpf load ${f} --attach${c.args ? ' ' + c.args.map((a) => a.replace(ROOT + '/', '')).join(' ') : ''}`, async (t) => {
    if (c.waits) {
      await cli.waitFor(/Hit Ctrl-C to detach and exit/);
      // Something to see: the case's own poke, and the syscalls and scheduling of the processes around.
      await c.poke?.();
      await new Promise((r) => setTimeout(r, 2000));
      t.equal(await cli.interrupt(), 0, `exits 0 after SIGINT\n${cli.stderr}`);
    } else {
      t.equal(await cli.exit, 0, `exits 0 by itself\n${cli.stderr}`);
    }
    const all = cli.stdout + cli.stderr;
    for (const re of c.shows) t.match(all, re, `shows ${re}`);
    t.match(all, /closed all maps and programs \(0 tsbpf fd\(s\) still open\)|^run /m);
  });
}
