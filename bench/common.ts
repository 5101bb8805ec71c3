// Shared by the benchmarks: failures of the bench's own environment, building the libbpf reference
// programs (our own C, compiled at bench time, never committed as binaries), statistics.

import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));

/** A failure of the bench's own (environment, reference): reported without a stack, exit status 1. */
export class BenchFailure extends Error {}

export function fail(msg: string): never {
  throw new BenchFailure(msg);
}

/**
 * Compile `bench/<source>` against libbpf into `dir`, returning the binary's path. Missing gcc, libbpf
 * headers or libraries fail with the package to install.
 */
export function compileLibbpfReference(source: string, dir: string): string {
  const out = join(dir, source.replace(/\.c$/, ''));
  const cc = spawnSync('gcc', ['-O2', '-Wall', join(BENCH_DIR, source), '-lbpf', '-lelf', '-lz', '-o', out], { encoding: 'utf8' });
  if (cc.error) {
    const code = (cc.error as NodeJS.ErrnoException).code;
    fail(code === 'ENOENT' ? 'gcc not found: the libbpf reference needs it (apt-get install gcc)' : `gcc: ${cc.error.message}`);
  }
  if (cc.status !== 0) {
    const err = cc.stderr;
    if (/bpf\/(libbpf|bpf|btf)\.h/.test(err) && /No such file/.test(err)) {
      fail('libbpf headers (bpf/bpf.h, bpf/btf.h, bpf/libbpf.h) not found: apt-get install libbpf-dev\n' + err);
    }
    const lib = /cannot find -l(bpf|elf|z)\b/.exec(err);
    if (lib) {
      const pkg = { bpf: 'libbpf-dev', elf: 'libelf-dev', z: 'zlib1g-dev' }[lib[1] as 'bpf' | 'elf' | 'z'];
      fail(`library -l${lib[1]} not found: apt-get install ${pkg}\n` + err);
    }
    fail(`compiling bench/${source} failed (gcc exit ${cc.status}):\n${err}`);
  }
  return out;
}

export function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
