import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, obj, childEnv, CHILD_TIMEOUT_MS } from './helpers/env.js';

// Run the CLI from source with the same TypeScript loader tap gave this process.
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');

function run(args: string[]) {
  return spawnSync(process.execPath, [...nodeArgs, CLI, ...args], { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, env: childEnv });
}

t.test('tsbpf btf dump --format c writes a vmlinux.h that builds the objects in bpf/', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-vmlinux-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = spawnSync(process.execPath, [...nodeArgs, CLI, 'btf', 'dump', '--format', 'c'], { encoding: 'buffer', timeout: CHILD_TIMEOUT_MS, maxBuffer: 1 << 27, env: childEnv });
  t.equal(r.status, 0, r.stderr.toString());
  writeFileSync(join(dir, 'vmlinux.h'), r.stdout);
  t.ok(r.stdout.length > 1_000_000, `${r.stdout.length} bytes`);
  // Built like bpf/build.sh does, from copies next to our header (a quoted include looks in the source's
  // own directory first, which would find the committed bpf/vmlinux.h).
  const arch = process.arch === 'arm64' ? 'arm64' : 'x86';
  const triple = process.arch === 'arm64' ? 'aarch64' : 'x86_64';
  for (const f of readdirSync(join(ROOT, 'bpf'))) {
    if (/\.(c|h)$/.test(f) && f !== 'vmlinux.h') copyFileSync(join(ROOT, 'bpf', f), join(dir, f));
  }
  for (const src of ['hello.c', 'runqslower.c', 'core_kernel.c']) {
    const cc = spawnSync('clang-19', ['-g', '-O2', '-target', 'bpf', '-mcpu=v3', `-D__TARGET_ARCH_${arch}`, `-I/usr/include/${triple}-linux-gnu`,
      '-Wall', '-Werror', '-c', join(dir, src), '-o', join(dir, src.replace(/\.c$/, '.o'))], { encoding: 'utf8' });
    t.equal(cc.status, 0, `${src} compiles against the dumped header${cc.stderr ? `: ${cc.stderr.slice(0, 2000)}` : ''}`);
  }
  const json = run(['btf', 'dump', obj('hello.o'), '--format', 'json']);
  t.equal(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { format: string; types: { name: string }[] };
  t.equal(parsed.format, 'tsbpf-btf');
  t.ok(parsed.types.some((ty) => ty.name === 'calls'), 'the object\'s types, by name');
  const bad = run(['btf', 'dump', '--format', 'yaml']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /--format must be c or json/);
  t.end();
});
