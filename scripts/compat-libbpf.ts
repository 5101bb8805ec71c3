// The reference side of the differential test and of `npm run compat`: libbpf
// (the system's libbpf-dev / bpftool), driven from Node.
//
// - `bpftoolLoadall(obj, dir)`: `bpftool prog loadall OBJ DIR`, which pins every
//   program libbpf loaded as DIR/<function name>.
// - `libbpfLoad(obj, dir, opts)`: the same through a tiny C program of ours linked
//   against libbpf (built once into a cache), for what bpftool cannot do: load
//   ONE program of an object (the others' autoload switched off), and size maps
//   that declare max_entries 0 / value_size 0 the way tools do in user space.
//   It pins only the programs it loaded, so `SEC("?...")` programs don't make
//   the run fail the way they make `bpftool prog loadall` fail.
//
// Nothing here is copied from libbpf or bpftool: the helper only calls libbpf's
// public API.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BPF_FS = '/sys/fs/bpf';

const HELPER_C = String.raw`
// tsbpf compat helper: load a BPF object with libbpf and pin the programs it loaded.
// usage: libbpf-load OBJ PINDIR [--size] [--only NAME] [--btf TARGET_BTF] | libbpf-load OBJ --list
// (--btf: CO-RE relocation against this BTF instead of the kernel's, btf_custom_path)
// stdout: "PINNED <name>" per pinned program, or with --list (open only, no load)
// "PROG <name> <section> <autoload 0|1> <type>" per program; stderr: libbpf's messages, then a
// final "RESULT <stage> <errno>" line on failure (stage: open, only, load, pin).
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static int size_exempt(enum bpf_map_type t)
{
	switch (t) {
	case BPF_MAP_TYPE_PERF_EVENT_ARRAY:      /* libbpf sizes it to the CPU count */
	case BPF_MAP_TYPE_SK_STORAGE:            /* local storage: max_entries must be 0 */
	case BPF_MAP_TYPE_INODE_STORAGE:
	case BPF_MAP_TYPE_TASK_STORAGE:
	case 32: /* BPF_MAP_TYPE_CGRP_STORAGE (6.2+, not in every uapi header) */
	case BPF_MAP_TYPE_CGROUP_STORAGE:
	case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
	case BPF_MAP_TYPE_STRUCT_OPS:
		return 1;
	default:
		return 0;
	}
}

int main(int argc, char **argv)
{
	const char *path, *dir, *only = NULL, *btf = NULL;
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	int size = 0, i, err, found = 0;
	struct bpf_object *obj;
	struct bpf_program *prog;
	struct bpf_map *map;
	char pin[4096];

	if (argc < 3) {
		fprintf(stderr, "usage: %s OBJ PINDIR [--size] [--only NAME]\n", argv[0]);
		return 64;
	}
	path = argv[1];
	dir = argv[2];
	if (!strcmp(dir, "--list")) {
		libbpf_set_print(print_fn);
		obj = bpf_object__open_file(path, NULL);
		if (!obj) {
			err = errno;
			fprintf(stderr, "RESULT open %d\n", err);
			return 2;
		}
		bpf_object__for_each_program(prog, obj)
			printf("PROG %s %s %d %d\n", bpf_program__name(prog), bpf_program__section_name(prog),
			       bpf_program__autoload(prog), (int)bpf_program__type(prog));
		bpf_object__close(obj);
		return 0;
	}
	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--size"))
			size = 1;
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--btf") && i + 1 < argc)
			btf = argv[++i];
	}
	opts.btf_custom_path = btf;
	libbpf_set_print(print_fn);
	obj = bpf_object__open_file(path, &opts);
	if (!obj) {
		err = errno;
		fprintf(stderr, "RESULT open %d\n", err);
		return 2;
	}
	if (size) {
		bpf_object__for_each_map(map, obj) {
			enum bpf_map_type t = bpf_map__type(map);
			if (bpf_map__max_entries(map) == 0 && !size_exempt(t))
				bpf_map__set_max_entries(map, (t == BPF_MAP_TYPE_RINGBUF || t == BPF_MAP_TYPE_USER_RINGBUF) ? 256 * 1024 : 1024);
			if (bpf_map__value_size(map) == 0 && t == BPF_MAP_TYPE_STACK_TRACE)
				bpf_map__set_value_size(map, 127 * 8);
		}
	}
	/* An object whose only function is in .text (a BTF/data fixture) has no program to load. */
	bpf_object__for_each_program(prog, obj) {
		if (!strcmp(bpf_program__section_name(prog), ".text"))
			bpf_program__set_autoload(prog, false);
	}
	if (only) {
		bpf_object__for_each_program(prog, obj) {
			int me = !strcmp(bpf_program__name(prog), only);
			found |= me;
			bpf_program__set_autoload(prog, me);
		}
		if (!found) {
			fprintf(stderr, "no program named '%s'\nRESULT only %d\n", only, ENOENT);
			bpf_object__close(obj);
			return 2;
		}
	}
	err = bpf_object__load(obj);
	if (err) {
		err = errno ? errno : -err;
		fprintf(stderr, "RESULT load %d\n", err);
		bpf_object__close(obj);
		return 3;
	}
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__autoload(prog) || bpf_program__fd(prog) < 0)
			continue;
		snprintf(pin, sizeof(pin), "%s/%s", dir, bpf_program__name(prog));
		err = bpf_program__pin(prog, pin);
		if (err) {
			fprintf(stderr, "RESULT pin %d\n", -err);
			bpf_object__close(obj);
			return 4;
		}
		printf("PINNED %s\n", bpf_program__name(prog));
	}
	bpf_object__close(obj);
	return 0;
}
`;

/** Build (once, cached by source hash) the libbpf helper; returns its path, or why it could not be built. */
export function buildLibbpfHelper(cacheDir?: string): { path: string } | { error: string } {
  const hash = createHash('sha256').update(HELPER_C).digest('hex').slice(0, 16);
  const dir = cacheDir ?? join(tmpdir(), 'tsbpf-compat');
  const bin = join(dir, `libbpf-load-${hash}`);
  if (existsSync(bin)) return { path: bin };
  if (!existsSync('/usr/include/bpf/libbpf.h')) return { error: 'libbpf-dev is not installed (/usr/include/bpf/libbpf.h missing)' };
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `libbpf-load-${hash}.c`);
  writeFileSync(src, HELPER_C);
  const errors: string[] = [];
  for (const cc of ['cc', 'gcc', 'clang-19', 'clang']) {
    const tmp = `${bin}.${process.pid}.tmp`;
    const r = spawnSync(cc, ['-O1', '-o', tmp, src, '-lbpf'], { encoding: 'utf8' });
    if (r.status === 0) {
      renameSync(tmp, bin);
      return { path: bin };
    }
    errors.push(`${cc}: ${r.error ? r.error.message : (r.stderr || '').trim().split('\n').slice(-1)[0]}`);
  }
  return { error: `cannot build the libbpf helper (${errors.join('; ')})` };
}

export interface LibbpfProgram {
  name: string;
  section: string;
  autoload: boolean;
  type: number;
}

/** The programs libbpf finds in an object (open only, nothing loaded). */
export function libbpfList(helper: string, obj: string): { programs: LibbpfProgram[] } | { error: string; errno?: number } {
  const r = spawnSync(helper, [obj, '--list'], { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 });
  if (r.error) return { error: `helper: ${r.error.message}` };
  if (r.status !== 0) {
    const m = /RESULT \w+ (-?\d+)/.exec(r.stderr || '');
    return { error: summarizeLibbpfLog(r.stderr || ''), errno: m ? Math.abs(Number(m[1])) : undefined };
  }
  const programs = (r.stdout || '').split('\n').filter((l) => l.startsWith('PROG ')).map((l) => {
    const [, name, section, autoload, type] = l.split(' ');
    return { name, section, autoload: autoload === '1', type: Number(type) };
  });
  return { programs };
}

export interface LibbpfResult {
  ok: boolean;
  /** Program name → pin path, for every program libbpf loaded. */
  pinned: Map<string, string>;
  /** One-line summary of why the load failed ('' when ok). */
  reason: string;
  /** errno of the failure, when known. */
  errno?: number;
  /** Which step failed. */
  stage?: 'open' | 'only' | 'load' | 'pin' | 'timeout' | 'spawn';
  /** libbpf's stderr (messages and verifier log). */
  log: string;
  ms: number;
}

/** A fresh, empty directory on bpffs for pins. */
export function makePinDir(tag: string): string {
  if (!existsSync(join(BPF_FS))) throw new Error(`${BPF_FS} missing`);
  const dir = join(BPF_FS, `tsbpf-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(dir);
  return dir;
}

/** Unpin everything under a pin directory and remove it. */
export function removePinDir(dir: string): void {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
}

function pinsIn(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  if (!existsSync(dir)) return m;
  for (const f of readdirSync(dir).sort()) m.set(f, join(dir, f));
  return m;
}

/** `bpftool prog loadall OBJ DIR` (DIR must not exist yet, or be empty). */
export function bpftoolLoadall(obj: string, dir: string, timeoutMs = 60_000): LibbpfResult {
  const t0 = Date.now();
  const r = spawnSync('bpftool', ['prog', 'loadall', obj, dir], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 << 20 });
  const ms = Date.now() - t0;
  const log = (r.stderr || '') + (r.stdout || '');
  if (r.error) {
    const timeout = (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    return { ok: false, pinned: new Map(), reason: timeout ? `timed out after ${timeoutMs} ms` : `bpftool: ${r.error.message}`, stage: timeout ? 'timeout' : 'spawn', log, ms };
  }
  if (r.status === 0) return { ok: true, pinned: pinsIn(dir), reason: '', log, ms };
  return { ok: false, pinned: new Map(), reason: summarizeLibbpfLog(log), stage: 'load', errno: errnoFromLog(log), log, ms };
}

/** Load with libbpf through the helper: the whole object, or `only` one program; `size` sizes 0-sized maps. */
export function libbpfLoad(helper: string, obj: string, dir: string, o: { only?: string; size?: boolean; btf?: string; timeoutMs?: number } = {}): LibbpfResult {
  const args = [obj, dir];
  if (o.size) args.push('--size');
  if (o.btf) args.push('--btf', o.btf);
  if (o.only) args.push('--only', o.only);
  const timeoutMs = o.timeoutMs ?? 60_000;
  const t0 = Date.now();
  const r = spawnSync(helper, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 << 20 });
  const ms = Date.now() - t0;
  const log = r.stderr || '';
  if (r.error) {
    const timeout = (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    return { ok: false, pinned: pinsIn(dir), reason: timeout ? `timed out after ${timeoutMs} ms` : `helper: ${r.error.message}`, stage: timeout ? 'timeout' : 'spawn', log, ms };
  }
  const pinned = pinsIn(dir);
  if (r.status === 0) return { ok: true, pinned, reason: '', log, ms };
  const m = /RESULT (\w+) (-?\d+)\s*$/.exec(log);
  const stage = (m?.[1] ?? 'load') as LibbpfResult['stage'];
  const errno = m ? Math.abs(Number(m[2])) : undefined;
  return { ok: false, pinned, reason: summarizeLibbpfLog(log), stage, errno, log, ms };
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 7: 'E2BIG', 9: 'EBADF', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST',
  22: 'EINVAL', 24: 'EMFILE', 28: 'ENOSPC', 34: 'ERANGE', 95: 'EOPNOTSUPP', 524: 'ENOTSUPP', 4007: 'LIBBPF_ERRNO__PROG2BIG',
};
export const errnoLabel = (n: number | undefined): string => (n === undefined ? '?' : ERRNO_NAMES[n] ?? `errno ${n}`);

function errnoFromLog(log: string): number | undefined {
  const m = /RESULT \w+ (-?\d+)/.exec(log) ?? /error: -?(\d+)/i.exec(log) ?? /(?:err|errno)[ =:]+-?(\d+)/.exec(log);
  return m ? Math.abs(Number(m[1])) : undefined;
}

/** Last meaningful line of a verifier log. */
export function lastVerifierLine(log: string): string {
  const lines = log.split('\n').map((l) => l.trim()).filter(Boolean);
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i];
    if (/^(processed \d+ insns|verification time|stack depth|-- END|-- BEGIN|libbpf:|RESULT |Error:|Warning:|If it used to work)/.test(l)) continue;
    if (/^mark_precise|^\d+: \(|^last_idx|^regs=|^parent didn't have|^from \d+ to \d+/.test(l)) continue;
    return l;
  }
  return '';
}

/** One line (≤ ~200 chars) saying why libbpf failed, from its stderr. */
export function summarizeLibbpfLog(log: string): string {
  const lines = log.split('\n');
  // The verifier's reason, when a program was rejected.
  const begin = lines.findIndex((l) => l.includes('-- BEGIN PROG LOAD LOG --'));
  const failed = lines.find((l) => /prog '[^']+': (BPF program load failed|failed to load)/.test(l));
  if (failed && begin >= 0) {
    const m = /prog '([^']+)': (?:BPF program load failed|failed to load)[^:]*: (.*)$/.exec(failed);
    let why = '';
    if (begin >= 0) {
      const end = lines.findIndex((l, i) => i > begin && l.includes('-- END PROG LOAD LOG --'));
      why = lastVerifierLine(lines.slice(begin + 1, end < 0 ? undefined : end).join('\n'));
    }
    return clip(`prog '${m?.[1] ?? '?'}': ${m?.[2]?.trim() ?? 'load failed'}${why ? ` (${why})` : ''}`);
  }
  const useful = lines
    .map((l) => l.replace(/^libbpf: /, '').trim())
    .filter((l) => l && !/^(RESULT|Warning: bpftool|If it used to work|Error: failed to (open|load) object file|failed to load object)/.test(l));
  const interesting = useful.filter((l) => /fail|not found|unsupported|not supported|invalid|refus|unrecognized|missing|unknown|can't|cannot|no |error|not resolved|unresolved/i.test(l));
  if (interesting.length) return clip(interesting[0]);
  if (failed) return clip(failed.replace(/^libbpf: /, ''));
  const any = useful.length ? useful : lines.map((l) => l.replace(/^libbpf: /, '').trim()).filter((l) => l && !l.startsWith('RESULT'));
  return clip(any[any.length - 1] ?? 'failed');
}

export function clip(s: string, n = 200): string {
  s = s.replace(/\s+/g, ' ').trim();
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
