// The kernel's BPF selftests (from Debian's linux-source-6.1) compiled into a
// cache outside the repository: the corpus of `npm run compat`.
//
//   $TSBPF_CORPUS_DIR (default /var/cache/tsbpf-corpus)/
//     src/            the parts of the kernel tree that are needed
//     include/        bpf/*.h (libbpf headers of that tree + generated bpf_helper_defs.h), vmlinux.h of this kernel
//     obj/NAME.bpf.o  one object per progs/NAME.c; obj/NAME.key (cache key), obj/NAME.fail (compiler error)
//     obj/linked/NAME.bpf.o  objects statically linked with `bpftool gen object` as the selftests do
//
// Objects are rebuilt only when their cache key changes: the source file, the
// flags, the compiler version and the generated headers (vmlinux.h follows the
// running kernel's BTF).

import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';

export const CORPUS_DIR = process.env.TSBPF_CORPUS_DIR ?? '/var/cache/tsbpf-corpus';
export const CLANG = process.env.CLANG ?? 'clang-19';
const PACKAGE = 'linux-source-6.1';
const NEEDED = [
  'tools/testing/selftests/bpf',
  'tools/lib/bpf',
  'tools/include',
  'include/uapi',
  'arch/x86/include/uapi',
  'scripts/bpf_doc.py',
  'Makefile',
];

export interface Corpus {
  dir: string;
  tree: string;
  selftests: string;
  include: string;
  objDir: string;
  /** Kernel version of the source tree, e.g. "6.1.192". */
  sourceVersion: string;
}

const log = (s: string) => process.stderr.write(`compat: ${s}\n`);
const sha = (...parts: (string | Buffer)[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex');
};

function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 512 << 20, input: opts.input });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${(r.stderr || '').trim().slice(-2000)}`);
  return r.stdout;
}

function findTarball(): string | undefined {
  if (!existsSync('/usr/src')) return undefined;
  const f = readdirSync('/usr/src').find((n) => n.startsWith(PACKAGE) && /\.tar\.(xz|bz2|gz)$/.test(n));
  return f ? join('/usr/src', f) : undefined;
}

/** Source tree: install the package if needed, extract what is needed once, generate headers. */
export function prepareCorpus(dir = CORPUS_DIR): Corpus {
  let tarball = findTarball();
  if (!tarball) {
    log(`apt-get install -y ${PACKAGE}`);
    run('apt-get', ['install', '-y', PACKAGE]);
    tarball = findTarball();
    if (!tarball) throw new Error(`${PACKAGE} installed but no tarball under /usr/src`);
  }
  const src = join(dir, 'src');
  const marker = join(src, '.extracted');
  const tarKey = `${tarball} ${statSync(tarball).size} ${statSync(tarball).mtimeMs} ${NEEDED.join(' ')}`;
  if (!existsSync(marker) || readFileSync(marker, 'utf8') !== tarKey) {
    log(`extracting ${NEEDED.join(', ')} from ${tarball} (about a minute)`);
    rmSync(src, { recursive: true, force: true });
    mkdirSync(src, { recursive: true });
    const top = basename(tarball).replace(/\.tar\.\w+$/, '');
    run('tar', ['-xf', tarball, '-C', src, ...NEEDED.map((p) => `${top}/${p}`)]);
    writeFileSync(marker, tarKey);
  }
  const tree = join(src, readdirSync(src).find((n) => n.startsWith('linux-source'))!);
  const selftests = join(tree, 'tools/testing/selftests/bpf');
  const include = join(dir, 'include');
  mkdirSync(join(include, 'bpf'), { recursive: true });
  // libbpf headers of the same tree (bpf_helpers.h, bpf_core_read.h, ...) and the generated helper definitions.
  const libbpfDir = join(tree, 'tools/lib/bpf');
  for (const h of readdirSync(libbpfDir).filter((n) => n.endsWith('.h'))) copyFileSync(join(libbpfDir, h), join(include, 'bpf', h));
  const defs = join(include, 'bpf', 'bpf_helper_defs.h');
  if (!existsSync(defs)) {
    const out = run('python3', [join(tree, 'scripts/bpf_doc.py'), '--header', '--filename', join(tree, 'tools/include/uapi/linux/bpf.h')]);
    writeFileSync(defs, out);
  }
  // vmlinux.h of the running kernel, regenerated when its BTF changes.
  const btf = readFileSync('/sys/kernel/btf/vmlinux');
  const vmKey = join(include, 'vmlinux.h.key');
  const btfHash = sha(btf);
  if (!existsSync(join(include, 'vmlinux.h')) || !existsSync(vmKey) || readFileSync(vmKey, 'utf8') !== btfHash) {
    log('bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h');
    writeFileSync(join(include, 'vmlinux.h'), run('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux', 'format', 'c']));
    writeFileSync(vmKey, btfHash);
  }
  let sourceVersion = PACKAGE.replace('linux-source-', '');
  if (existsSync(join(tree, 'Makefile'))) {
    const mk = readFileSync(join(tree, 'Makefile'), 'utf8');
    const v = (k: string) => new RegExp(`^${k} = (.*)$`, 'm').exec(mk)?.[1]?.trim() ?? '?';
    sourceVersion = `${v('VERSION')}.${v('PATCHLEVEL')}.${v('SUBLEVEL')}`;
  }
  const objDir = join(dir, 'obj');
  mkdirSync(join(objDir, 'linked'), { recursive: true });
  return { dir, tree, selftests, include, objDir, sourceVersion };
}

/** clang's own system include dirs as -idirafter, as the selftests' Makefile does. */
function sysIncludes(): string[] {
  const r = spawnSync(CLANG, ['-v', '-E', '-'], { input: '', encoding: 'utf8' });
  const text = r.stderr || '';
  const a = text.indexOf('<...> search starts here:');
  const b = text.indexOf('End of search list.');
  if (a < 0 || b < 0) return [];
  return text
    .slice(a, b)
    .split('\n')
    .slice(1)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('/'))
    .flatMap((d) => ['-idirafter', d]);
}

export function compilerVersion(): string {
  const r = spawnSync(CLANG, ['--version'], { encoding: 'utf8' });
  return (r.stdout || '').split('\n')[0].trim();
}

export function bpfCflags(c: Corpus, name: string): string[] {
  return [
    '-g', '-Werror', '-D__TARGET_ARCH_x86', '-mlittle-endian',
    `-I${c.include}`, `-I${c.selftests}`, `-I${join(c.tree, 'tools/include/uapi')}`,
    ...sysIncludes(),
    '-Wno-compare-distinct-pointer-types', '-DENABLE_ATOMICS_TESTS',
    ...(name === 'test_l4lb_noinline' || name === 'test_xdp_noinline' ? ['-fno-inline'] : []),
    '-O2', '-target', 'bpf', '-mcpu=v3',
    // reproducible objects: no cache path in DWARF / BTF line info
    `-fdebug-prefix-map=${c.tree}=linux`, '-fdebug-compilation-dir=.',
  ];
}

export interface BuildResult {
  /** Object name (file name without .bpf.o). */
  name: string;
  path?: string;
  /** Compiler error, when it did not compile. */
  error?: string;
  /** Compiled only with -Wno-error. */
  wnoError?: boolean;
  linked?: boolean;
}

async function pool<T>(items: T[], jobs: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, jobs) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

function spawnAsync(cmd: string, args: string[], cwd: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', (e) => resolve({ code: -1, stderr: String(e) }));
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

/** Compile every progs/*.c (cached), then link the multi-file objects; returns results sorted by name. */
export async function buildCorpus(c: Corpus, jobs = 2, only?: (name: string) => boolean): Promise<BuildResult[]> {
  const progs = join(c.selftests, 'progs');
  const headerKey = sha(readFileSync(join(c.include, 'vmlinux.h.key')), readFileSync(join(c.include, 'bpf', 'bpf_helper_defs.h')), compilerVersion());
  const names = readdirSync(progs).filter((n) => n.endsWith('.c')).map((n) => n.slice(0, -2)).filter((n) => !only || only(n)).sort();
  const results = new Map<string, BuildResult>();
  let built = 0;
  let cached = 0;
  await pool(names, jobs, async (name) => {
    const flags = bpfCflags(c, name);
    const key = sha(readFileSync(join(progs, `${name}.c`)), flags.join(' '), headerKey);
    const out = join(c.objDir, `${name}.bpf.o`);
    const keyFile = join(c.objDir, `${name}.key`);
    const failFile = join(c.objDir, `${name}.fail`);
    if (existsSync(keyFile) && readFileSync(keyFile, 'utf8').startsWith(key)) {
      const wnoError = readFileSync(keyFile, 'utf8').endsWith(' wno-error');
      if (existsSync(out)) results.set(name, { name, path: out, wnoError });
      else results.set(name, { name, error: existsSync(failFile) ? readFileSync(failFile, 'utf8') : 'failed' });
      cached++;
      return;
    }
    rmSync(out, { force: true });
    rmSync(failFile, { force: true });
    const tmp = `${out}.tmp`;
    let r = await spawnAsync(CLANG, [...flags, '-c', `progs/${name}.c`, '-o', tmp], c.selftests);
    let wnoError = false;
    if (r.code !== 0 && /\[-Werror/.test(r.stderr) && !/error: (?!.*\[-Werror)/.test(r.stderr)) {
      // Warnings only: the selftests of a newer compiler sometimes need -Wno-error.
      wnoError = true;
      r = await spawnAsync(CLANG, [...flags, '-Wno-error', '-c', `progs/${name}.c`, '-o', tmp], c.selftests);
    }
    if (r.code === 0) {
      renameSync(tmp, out);
      results.set(name, { name, path: out, wnoError });
    } else {
      rmSync(tmp, { force: true });
      const first = r.stderr.split('\n').find((l) => / error: /.test(l)) ?? r.stderr.trim().split('\n').slice(-1)[0] ?? 'failed';
      writeFileSync(failFile, first.replace(/^.*?progs\//, 'progs/'));
      results.set(name, { name, error: readFileSync(failFile, 'utf8') });
    }
    writeFileSync(keyFile, `${key}${wnoError ? ' wno-error' : ''}`);
    built++;
    if (built % 25 === 0) log(`compiled ${built} (${cached} cached) of ${names.length}`);
  });
  log(`compiled ${built}, cached ${cached}, of ${names.length} progs/*.c`);
  // Statically linked objects, as the selftests' Makefile lists them (NAME.skel.h-deps := A.bpf.o B.bpf.o).
  const mk = readFileSync(join(c.selftests, 'Makefile'), 'utf8');
  for (const m of mk.matchAll(/^(\w+)\.skel\.h-deps := (.+)$/gm)) {
    const name = m[1];
    if (only && !only(`${name}.linked`)) continue;
    const deps = m[2].trim().split(/\s+/).map((d) => d.replace(/\.bpf\.o$/, ''));
    const inputs = deps.map((d) => results.get(d)?.path ?? join(c.objDir, `${d}.bpf.o`));
    const out = join(c.objDir, 'linked', `${name}.bpf.o`);
    const keyFile = join(c.objDir, 'linked', `${name}.key`);
    const failFile = join(c.objDir, 'linked', `${name}.fail`);
    const missing = inputs.filter((p) => !existsSync(p));
    if (missing.length) {
      results.set(`${name}.linked`, { name: `${name}.linked`, linked: true, error: `inputs did not compile: ${missing.map((p) => basename(p)).join(', ')}` });
      continue;
    }
    const key = sha(...inputs.map((p) => readFileSync(p)));
    if (!(existsSync(keyFile) && readFileSync(keyFile, 'utf8') === key)) {
      rmSync(out, { force: true });
      rmSync(failFile, { force: true });
      const r = spawnSync('bpftool', ['gen', 'object', out, ...inputs], { encoding: 'utf8' });
      if (r.status !== 0) {
        rmSync(out, { force: true });
        const msg = (r.stderr || '').split('\n').map((l) => l.replace(/^libbpf: /, '').trim()).filter((l) => l && !/^(Warning|If it used)/.test(l));
        writeFileSync(failFile, `bpftool gen object: ${msg[0] ?? `exit ${r.status}`}`);
      }
      writeFileSync(keyFile, key);
    }
    results.set(`${name}.linked`, existsSync(out)
      ? { name: `${name}.linked`, path: out, linked: true }
      : { name: `${name}.linked`, linked: true, error: existsSync(failFile) ? readFileSync(failFile, 'utf8') : 'link failed' });
  }
  return [...results.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
