import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, obj, childEnv, CHILD_TIMEOUT_MS } from './helpers/env.js';

// Run the CLI from source with the same TypeScript loader tap gave this process.
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');

function run(args: string[]) {
  return spawnSync(process.execPath, [...nodeArgs, CLI, ...args], { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, env: childEnv });
}

t.test('tsbpf load prints programs and maps', (t) => {
  const r = run(['load', obj('loader.o')]);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /loaded 2 program\(s\), 6 map\(s\)/);
  t.match(r.stdout, /PROGRAM\s+TYPE\s+ID\s+XLATED/);
  t.match(r.stdout, /run_all\s+syscall\s+\d+\s+\d+ insns/);
  t.match(r.stdout, /counts\s+hash\s+4B\s+8B\s+1024/);
  t.match(r.stdout, /percpu\s+percpu_array\s+4B\s+8B\s+4/);
  t.end();
});

t.test('tsbpf load --btf relocates CO-RE against the given BTF', (t) => {
  const r = run(['load', obj('runqlat.o'), '--btf', '/sys/kernel/btf/vmlinux']);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /on_switch\s+raw_tracepoint/);
  const bad = run(['load', obj('runqlat.o'), '--btf', '/nonexistent.btf']);
  t.equal(bad.status, 1);
  t.match(bad.stderr, /nonexistent\.btf/);
  t.end();
});

t.test('tsbpf load: clear errors and exit codes', (t) => {
  let r = run(['load', obj('bad.o')]);
  t.equal(r.status, 1);
  t.match(r.stderr, /program "bad_access": the verifier rejected it/);
  r = run(['load', '/nonexistent.o']);
  t.equal(r.status, 1);
  t.match(r.stderr, /nonexistent\.o/);
  r = run(['load']);
  t.equal(r.status, 2);
  t.match(r.stderr, /Usage: tsbpf load/);
  r = run(['load', obj('loader.o'), '--set', 'nosuchvar=1']);
  t.equal(r.status, 1);
  t.match(r.stderr, /nosuchvar/);
  r = run(['frobnicate']);
  t.equal(r.status, 2);
  t.end();
});

t.test('tsbpf load --attach runs until SIGINT, then detaches and closes every fd', async (t) => {
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'load', obj('hello.o'), '--attach', '--set', 'target_tgid=1'], { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "Attached" line in time: ${stdout} ${stderr}`)), 60_000);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('Hit Ctrl-C')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`exited early: ${stdout} ${stderr}`)));
  });
  t.match(stdout, /attach on_getpid → tracepoint syscalls\/sys_enter_getpid/);
  t.match(stdout, /attach on_raw_sys_enter → raw_tracepoint sys_enter/);
  t.match(stdout, /attach on_btf_sys_enter → tp_btf sys_enter/);
  // While attached the child holds bpf links, maps and programs.
  const held = readdirSync(`/proc/${child.pid}/fd`).map((f) => {
    try {
      return readlinkSync(`/proc/${child.pid}/fd/${f}`);
    } catch {
      return '';
    }
  });
  t.ok(held.some((l) => l.includes('bpf_link')), 'holds bpf links while attached');
  const code = await new Promise<number | null>((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', (c) => resolve(c));
    child.kill('SIGINT');
  });
  t.equal(code, 0, stderr);
  t.match(stdout, /SIGINT: detaching/);
  t.match(stdout, /detached 3 link\(s\), closed all maps and programs \(0 tsbpf fd\(s\) still open\)/);
});
