// `tsbpf load OBJ --attach` on an object whose sections cover tracepoint, raw_tp, tp_btf, fentry, uprobe and
// xdp: every program attaches (fentry only where the kernel allows trampolines), fires, and SIGINT detaches all.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { loadCollectionSpec, Program, BpfMap } from '../src/index.js';
import { ROOT, obj, childEnv } from './helpers/env.js';
import { skipReason } from './helpers/features.js';

const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');
const spec = loadCollectionSpec(obj('attach_all.o'));
const noTrampolines = skipReason('trampolines');

function bssCounters(progId: number): Record<string, bigint> {
  using prog = Program.fromId(progId);
  for (const id of prog.info().mapIds) {
    using m = BpfMap.fromId(id);
    if (!m.name.endsWith('.bss')) continue;
    const v = m.lookup(0) as Buffer;
    const out: Record<string, bigint> = {};
    for (const [name, sv] of Object.entries(spec.variables)) if (sv.map === '.bss') out[name] = v.readBigUInt64LE(sv.offset);
    return out;
  }
  throw new Error('no .bss map');
}

async function udpToLoopback(n: number): Promise<void> {
  const sock = createSocket('udp4');
  for (let i = 0; i < n; i++) await new Promise<void>((r, j) => sock.send('x', 9, '127.0.0.1', (e) => (e ? j(e) : r())));
  sock.close();
}

function xdpOnLo(): boolean {
  return /xdp/.test(spawnSync('ip', ['link', 'show', 'lo'], { encoding: 'utf8' }).stdout);
}

t.test('load --attach --iface lo attaches every family, each fires, SIGINT detaches them all', async (t) => {
  t.notOk(xdpOnLo(), 'nothing on lo before');
  // A python child calls libc's getpid(), which the uprobe sees, and the syscall, which the tracepoints see.
  const worker = spawn('python3', ['-c', 'import os,sys\nfor line in sys.stdin:\n  [os.getpid() for _ in range(int(line))]\n  print("done", flush=True)'], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => worker.kill());
  const programs = Object.keys(spec.programs).filter((p) => !(noTrampolines && p === 'on_fentry'));
  if (noTrampolines) t.comment(`on_fentry left out here: ${noTrampolines}`);
  const args = ['load', obj('attach_all.o'), '--attach', '--iface', 'lo', '--set', `target_tgid=${worker.pid}`, ...programs.flatMap((p) => ['--program', p])];
  const cli = spawn(process.execPath, [...nodeArgs, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  let stdout = '';
  let stderr = '';
  cli.stdout.on('data', (d) => (stdout += d));
  cli.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => cli.once('exit', (c) => r(c)));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (stdout.includes('Hit Ctrl-C')) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
    void exited.then(() => { clearInterval(timer); reject(new Error(`exited early: ${stdout}\n${stderr}`)); });
  });
  for (const [name, kind] of [['on_tp', 'tracepoint'], ['on_raw', 'raw_tracepoint'], ['on_btf', 'tp_btf'], ['on_uprobe', 'uprobe'], ['on_xdp', 'xdp'], ['on_fentry', 'fentry']]) {
    if (!programs.includes(name)) continue;
    t.match(stdout, new RegExp(`attach ${name} → ${kind}`), `${name} attached as ${kind}`);
  }
  t.ok(xdpOnLo(), 'lo has an XDP program while attached');
  // Make every hook fire: 50 getpid() calls in the worker, and packets over lo.
  worker.stdin!.write('50\n');
  await new Promise((r) => worker.stdout!.once('data', r));
  await udpToLoopback(3);
  const id = Number(/^on_tp\s+tracepoint\s+(\d+)/m.exec(stdout)?.[1]);
  const c = bssCounters(id);
  t.ok(c.hits_tp >= 50n, `tracepoint: ${c.hits_tp}`);
  t.ok(c.hits_raw >= 50n, `raw_tp: ${c.hits_raw}`);
  t.ok(c.hits_btf >= 50n, `tp_btf: ${c.hits_btf}`);
  t.ok(c.hits_uprobe >= 50n, `uprobe on libc getpid: ${c.hits_uprobe}`);
  t.ok(c.hits_xdp >= 2n, `xdp on lo: ${c.hits_xdp}`);
  if (!noTrampolines) t.ok(c.hits_fentry >= 50n, `fentry: ${c.hits_fentry}`);

  cli.kill('SIGINT');
  t.equal(await exited, 0, stderr);
  t.match(stdout, new RegExp(`detached ${programs.length} link\\(s\\).*\\(0 tsbpf fd\\(s\\) still open\\)`));
  t.notOk(xdpOnLo(), 'SIGINT took the XDP program off lo');
});
