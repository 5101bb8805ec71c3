// Without CAP_BPF (capabilities dropped with setpriv from util-linux, as root and as an unprivileged user):
// what works without privileges works (parsing objects, the kernel's BTF, inspect); what needs them fails
// with a typed error that names the missing capability, as one line from the CLI, with no crash and no
// leaked fd.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { obj, childEnv, ROOT } from './helpers/env.js';
import { startCli, tsOnlyArgs } from './helpers/cli.js';

const hasSetpriv = spawnSync('setpriv', ['--version']).status === 0;
const isRoot = process.getuid?.() === 0;
const skip = !isRoot ? 'needs root, to drop capabilities' : !hasSetpriv ? 'setpriv (util-linux) is not installed' : false;

// The two ways to lack CAP_BPF: root with an empty capability bounding set, and another user. `env`
// first: tap's process-info hook adds itself to NODE_OPTIONS of every child spawned from a test, and as
// another user it could not write its record into .tap/ at exit.
const DROPS: Record<string, string[]> = {
  'root without capabilities': ['env', 'NODE_OPTIONS=', 'setpriv', '--bounding-set=-all', '--inh-caps=-all', '--ambient-caps=-all', '--'],
  'user nobody': ['env', 'NODE_OPTIONS=', 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--'],
};

function runChild(wrapper: string[], script: string, args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const argv = [...wrapper, process.execPath, ...tsOnlyArgs, script, ...args];
    const c = spawn(argv[0]!, argv.slice(1), { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

t.setTimeout(400_000);

const NO_STACK = /^\s+at /m;

for (const [who, wrapper] of Object.entries(DROPS)) {
  t.test(`${who}: the library`, { skip }, async (t) => {
    const r = await runChild(wrapper, join(ROOT, 'test', 'helpers', 'priv-child.ts'), [obj('hello.o')]);
    t.equal(r.signal, null, 'no signal');
    t.equal(r.code, 0, `exits 0\n${r.stderr}`);
    const o = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    t.equal(BigInt('0x' + o.capEff), 0n, 'the child really has no capabilities');
    t.ok(o.spec.programs >= 1 && o.spec.maps >= 1, 'parsing an object works');
    t.ok(o.kernelBtfTypes > 1000, 'reading the kernel BTF works');
    for (const what of ['collection', 'map'] as const) {
      const e = o[what];
      t.equal(e.threw, true, `${what}: refused`);
      t.equal(e.tsbpf, true, `${what}: a TsbpfError`);
      t.equal(e.name, 'BpfError', `${what}: a BpfError`);
      t.equal(e.errno, 'EPERM', `${what}: EPERM`);
      t.same(e.missing, ['CAP_BPF'], `${what}: names the capability it lacks`);
      t.match(e.message, /bpf\(MAP_CREATE\) failed: EPERM \(this process lacks CAP_BPF: run as root or grant it/, `${what}: the message says so`);
    }
    t.match(o.collection.message, /^map "hello\.\S+" \(/, 'the message names the map');
    t.equal(o.fdsLeft, 0, 'no fd left open after the failures');
  });

  t.test(`${who}: the command`, { skip }, async (t) => {
    const load = startCli(['load', obj('hello.o'), '--attach'], wrapper, tsOnlyArgs);
    const feature = startCli(['feature'], wrapper, tsOnlyArgs);
    const inspect = startCli(['inspect', obj('hello.o')], wrapper, tsOnlyArgs);
    const btf = startCli(['btf', 'dump', '--type', 'task_struct'], wrapper, tsOnlyArgs);
    for (const [name, c] of [['load --attach', load], ['feature', feature]] as const) {
      t.equal(await c.exit, 1, `${name}: exit 1`);
      t.match(c.stderr, /^tsbpf: permission denied: bpf\(MAP_CREATE\) needs CAP_BPF, which this process lacks/, `${name}: names the capability`);
      t.match(c.stderr, /\nhint: run as root, or grant the capabilities/, `${name}: a hint`);
      t.notMatch(c.stderr, NO_STACK, `${name}: no stack trace`);
      t.equal(c.stdout, '', `${name}: nothing on stdout`);
    }
    t.equal(await inspect.exit, 0, `inspect works unprivileged\n${inspect.stderr}`);
    t.match(inspect.stdout, /^PROGRAMS$/m);
    t.equal(await btf.exit, 0, `btf dump works unprivileged\n${btf.stderr}`);
    t.match(btf.stdout, /^struct task_struct \{$/m);
  });
}
