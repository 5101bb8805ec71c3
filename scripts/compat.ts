// npm run compat [-- --only REGEX] [--budget SECONDS] [--jobs N] [--out FILE] [--from-results]
//
// (--from-results: re-render docs/compat.md from the last run's results in the cache.)
// Loads every object of the kernel's BPF selftests (built into a cache by
// scripts/compat-corpus.ts) with libbpf and with tsbpf on the running kernel,
// compares the translated instructions of every program both load, and writes
// docs/compat.md. Not part of CI (it needs the corpus and takes minutes).
//
// Per object, in a worker process (a crash or hang there cannot stop the run;
// a hard time limit kills it and the object is recorded with the step it was in):
//  1. libbpf lists the programs (open only);
//  2. `bpftool prog loadall` as is (the plain reference result);
//  3. libbpf loads the object as a whole with the two `loadall` artefacts discounted
//     (only autoloaded programs are pinned; maps declaring max_entries 0 / value_size 0
//     are sized as tools do in user space), and tsbpf loads it with the same sizing;
//  4. programs both loaded are compared; every other program (both whole loads did
//     not succeed, or `SEC("?...")`) is loaded on its own by both and compared.

import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bpftoolLoadall, buildLibbpfHelper, clip, errnoLabel, lastVerifierLine, libbpfList, libbpfLoad, removePinDir,
  type LibbpfProgram, type LibbpfResult, BPF_FS,
} from './compat-libbpf.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');

// ---------------------------------------------------------------- results

interface Side {
  ok: boolean;
  /** One-line reason when not ok. */
  error?: string;
  /** tsbpf error class, or libbpf failure stage. */
  kind?: string;
  errno?: number;
  ms?: number;
}

interface ProgRow {
  name: string;
  section: string;
  /** BPF_PROG_TYPE_* number as libbpf sees it (-1 when libbpf does not list it). */
  type: number;
  autoload: boolean;
  /** 'object': from the whole-object loads; 'single': loaded on its own by both. */
  mode: 'object' | 'single' | 'none';
  libbpf?: Side;
  tsbpf?: Side;
  /** Present when both loaded it. */
  diff?: {
    identical: boolean;
    differing: number;
    summary: string;
    detail: string;
    /** Same functions and code, other subprogram order. */
    reordered?: boolean;
    /** Identical once tsbpf is given libbpf's value of this host-computed .kconfig extern. */
    kconfig?: string;
  };
  /** Set by classify(). */
  category?: string;
  note?: string;
}

interface ObjResult {
  name: string;
  file: string;
  /** libbpf could not open the object (no programs listed). */
  openError?: string;
  asIs?: Side;
  libbpf?: Side;
  tsbpf?: Side;
  /** Maps sized for both loaders (max_entries / value_size 0). */
  sized: string[];
  programs: ProgRow[];
  /** Programs tsbpf's spec has that libbpf does not list, and the reverse. */
  onlyTsbpf: string[];
  onlyLibbpf: string[];
  /** The step the worker was in when it crashed or ran out of time. */
  aborted?: { how: 'crash' | 'timeout'; step: string; message: string };
  budgetLeft?: string[];
  fdLeak?: number;
  ms: number;
  step?: string;
}

// ---------------------------------------------------------------- worker

interface Job {
  name: string;
  file: string;
  pinDir: string;
  budgetMs: number;
  helper: string;
  progressFile: string;
  /** CO-RE target BTF (a btf__core_reloc_* fixture) instead of the kernel's, for both loaders. */
  btf?: string;
}

async function worker(): Promise<void> {
  const tsbpf = await import('../src/index.js');
  const { compareXlated, describeDiff, summarizeDiff, xlatedProgramOf, sameUpToLayout, kconfigAlternatives, MapNames } = await import('./compat-xlated.js');
  const { loadCollectionSpec, Collection, Program, ownedFdCount, BPF_MAP_TYPE } = tsbpf;
  type Spec = ReturnType<typeof loadCollectionSpec>;

  const SIZE_EXEMPT = new Set<number>([
    BPF_MAP_TYPE.PERF_EVENT_ARRAY, BPF_MAP_TYPE.SK_STORAGE, BPF_MAP_TYPE.INODE_STORAGE, BPF_MAP_TYPE.TASK_STORAGE,
    BPF_MAP_TYPE.CGRP_STORAGE, BPF_MAP_TYPE.CGROUP_STORAGE, BPF_MAP_TYPE.PERCPU_CGROUP_STORAGE, BPF_MAP_TYPE.STRUCT_OPS,
  ]);

  /** The same sizing the libbpf helper applies with --size. */
  function size(spec: Spec): string[] {
    const sized: string[] = [];
    for (const m of Object.values(spec.maps)) {
      if (m.maxEntries === 0 && !SIZE_EXEMPT.has(m.type)) {
        m.maxEntries = m.type === BPF_MAP_TYPE.RINGBUF || m.type === BPF_MAP_TYPE.USER_RINGBUF ? 256 * 1024 : 1024;
        sized.push(`${m.name}.max_entries=${m.maxEntries}`);
      }
      if (m.valueSize === 0 && m.type === BPF_MAP_TYPE.STACK_TRACE) {
        m.valueSize = 127 * 8;
        sized.push(`${m.name}.value_size=${m.valueSize}`);
      }
    }
    return sized;
  }

  const errSide = (e: unknown, ms: number): Side => {
    const err = e as Error & { errnoCode?: number; log?: string; note?: string };
    const kind = err?.constructor?.name ?? 'Error';
    let msg = String(err?.message ?? err).split('\n')[0];
    if (kind === 'VerifierError' && err.log) {
      const last = lastVerifierLine(err.log);
      if (last) msg += ` — ${last}`;
    }
    return { ok: false, kind, error: clip(msg, 240), errno: err?.errnoCode, ms };
  };
  const libSide = (r: LibbpfResult): Side => (r.ok ? { ok: true, ms: r.ms } : { ok: false, error: r.reason, kind: r.stage, errno: r.errno, ms: r.ms });

  function compare(row: ProgRow, pin: string, mine: InstanceType<typeof Program>, file: string, kb: { kernelBtf?: string }) {
    const names = new MapNames();
    const theirs = Program.fromPin(pin);
    try {
      const a = xlatedProgramOf(theirs, names);
      const b = xlatedProgramOf(mine, names);
      const d = compareXlated(a.insns, b.insns);
      row.diff = { identical: d.identical, differing: d.differing, summary: summarizeDiff(d), detail: describeDiff(d) };
      if (d.identical) return;
      row.diff.reordered = sameUpToLayout(a, b);
      if (row.diff.reordered) return;
      // A .kconfig value the two loaders compute differently on this host?
      const spec = loadCollectionSpec(file);
      size(spec);
      for (const alt of kconfigAlternatives(spec)) {
        let c: InstanceType<typeof Collection> | undefined;
        try {
          c = new Collection(loadCollectionSpec(file), { programs: [row.name], kconfig: alt, ...kb });
          const again = compareXlated(a.insns, xlatedProgramOf(c.programs[row.name], names).insns);
          if (again.identical) {
            row.diff.kconfig = Object.entries(alt).map(([k, v]) => `${k}=${v}`).join(', ');
            return;
          }
        } catch {
          /* not this one */
        } finally {
          c?.close();
        }
      }
    } finally {
      theirs.close();
    }
  }

  process.on('message', (job: Job) => {
    const t0 = Date.now();
    const res: ObjResult = { name: job.name, file: job.file, sized: [], programs: [], onlyTsbpf: [], onlyLibbpf: [], ms: 0 };
    const step = (s: string) => {
      res.step = s;
      res.ms = Date.now() - t0;
      writeFileSync(job.progressFile, JSON.stringify(res));
    };
    const fds0 = ownedFdCount();
    const kb = job.btf ? { kernelBtf: job.btf } : {};
    let whole: InstanceType<typeof Collection> | undefined;
    try {
      mkdirSync(job.pinDir, { recursive: true });
      step('libbpf: list programs');
      const list = libbpfList(job.helper, job.file);
      let progs: LibbpfProgram[] = [];
      if ('error' in list) res.openError = list.error;
      // libbpf lists the lone .text function of a BTF/data fixture as a program of no type: not one.
      else progs = list.programs.filter((p) => p.section !== '.text');

      if (!job.btf) {
        step('bpftool prog loadall (as is)');
        const asIs = bpftoolLoadall(job.file, join(job.pinDir, 'asis'), job.budgetMs * 2);
        res.asIs = libSide(asIs);
        removePinDir(join(job.pinDir, 'asis'));
      }

      step('libbpf: load the object');
      const wholeDir = join(job.pinDir, 'whole');
      mkdirSync(wholeDir);
      const lib = res.openError ? undefined : libbpfLoad(job.helper, job.file, wholeDir, { size: true, btf: job.btf, timeoutMs: job.budgetMs * 2 });
      res.libbpf = lib ? libSide(lib) : { ok: false, error: res.openError, kind: 'open' };

      step('tsbpf: parse');
      let spec: Spec | undefined;
      const ts0 = Date.now();
      try {
        spec = loadCollectionSpec(job.file);
        res.sized = size(spec);
      } catch (e) {
        res.tsbpf = errSide(e, Date.now() - ts0);
      }
      if (spec) {
        step('tsbpf: load the object');
        const t1 = Date.now();
        try {
          whole = new Collection(spec, kb);
          res.tsbpf = { ok: true, ms: Date.now() - t1 };
        } catch (e) {
          res.tsbpf = errSide(e, Date.now() - t1);
        }
      }
      const specNames = spec ? Object.keys(spec.programs) : [];
      res.onlyTsbpf = specNames.filter((n) => !progs.some((p) => p.name === n)).sort();
      res.onlyLibbpf = spec ? progs.filter((p) => !spec!.programs[p.name]).map((p) => p.name).sort() : [];

      const rows: ProgRow[] = progs.map((p) => ({ name: p.name, section: p.section, type: p.type, autoload: p.autoload, mode: 'none' }));
      for (const n of res.onlyTsbpf) {
        const p = spec!.programs[n];
        rows.push({ name: n, section: p.section, type: -1, autoload: p.autoload, mode: 'none' });
      }
      rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      res.programs = rows;

      // Programs both whole loads hold.
      if (lib?.ok && whole) {
        for (const row of rows) {
          const pin = lib.pinned.get(row.name);
          const mine = whole.programs[row.name];
          if (!pin || !mine) continue;
          step(`compare ${row.name}`);
          row.mode = 'object';
          row.libbpf = { ok: true };
          row.tsbpf = { ok: true };
          compare(row, pin, mine, job.file, kb);
        }
      }
      whole?.close();
      whole = undefined;
      removePinDir(wholeDir);

      // An object with one program: its whole-object results are that program's.
      if (rows.length === 1 && rows[0].mode === 'none' && rows[0].autoload && rows[0].type !== -1 && spec?.programs[rows[0].name] && lib && res.tsbpf && !(lib.ok && whole)) {
        rows[0].mode = 'object';
        rows[0].libbpf = res.libbpf;
        rows[0].tsbpf = res.tsbpf;
      }

      // Everything else, one program at a time on both sides.
      const left: string[] = [];
      for (const row of rows) {
        if (row.mode !== 'none') continue;
        if (Date.now() - t0 > job.budgetMs) {
          left.push(row.name);
          continue;
        }
        row.mode = 'single';
        if (!res.openError && row.type !== -1) {
          step(`libbpf: load ${row.name}`);
          const dir = join(job.pinDir, 'single');
          mkdirSync(dir, { recursive: true });
          const r = libbpfLoad(job.helper, job.file, dir, { size: true, only: row.name, btf: job.btf, timeoutMs: job.budgetMs * 2 });
          row.libbpf = libSide(r);
          if (r.ok && !r.pinned.has(row.name)) row.libbpf = { ok: false, error: 'loaded but not pinned', kind: 'pin' };
          if (spec && spec.programs[row.name]) {
            step(`tsbpf: load ${row.name}`);
            const s1 = Date.now();
            let coll: InstanceType<typeof Collection> | undefined;
            try {
              const one = loadCollectionSpec(job.file);
              size(one);
              coll = new Collection(one, { programs: [row.name], ...kb });
              row.tsbpf = { ok: true, ms: Date.now() - s1 };
              if (row.libbpf.ok) {
                step(`compare ${row.name}`);
                compare(row, r.pinned.get(row.name)!, coll.programs[row.name], job.file, kb);
              }
            } catch (e) {
              row.tsbpf = errSide(e, Date.now() - s1);
            } finally {
              coll?.close();
            }
          } else {
            row.tsbpf = { ok: false, kind: 'missing', error: spec ? 'tsbpf does not see this program' : res.tsbpf?.error };
          }
          removePinDir(dir);
        } else {
          row.libbpf = { ok: false, error: res.openError ?? 'libbpf does not list this program', kind: 'open' };
          step(`tsbpf: load ${row.name}`);
          const s1 = Date.now();
          try {
            const one = loadCollectionSpec(job.file);
            size(one);
            new Collection(one, { programs: [row.name], ...kb }).close();
            row.tsbpf = { ok: true, ms: Date.now() - s1 };
          } catch (e) {
            row.tsbpf = errSide(e, Date.now() - s1);
          }
        }
      }
      if (left.length) res.budgetLeft = left;
      const leaked = ownedFdCount() - fds0;
      if (leaked > 0) res.fdLeak = leaked;
      step('done');
    } catch (e) {
      res.aborted = { how: 'crash', step: res.step ?? '?', message: clip(String((e as Error)?.stack ?? e), 400) };
      whole?.close();
    } finally {
      removePinDir(job.pinDir);
    }
    res.ms = Date.now() - t0;
    process.send!(res);
  });
  process.send!({ ready: true });
}

// ---------------------------------------------------------------- supervisor

class Worker {
  child?: ChildProcess;
  stderr = '';
  constructor(readonly id: number, readonly progressFile: string) {}

  start(): Promise<void> {
    const child = fork(fileURLToPath(import.meta.url), ['--worker'], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      detached: true, // own process group: a hard kill takes its libbpf/bpftool children too
    });
    this.child = child;
    this.stderr = '';
    child.stderr!.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-8000);
    });
    return new Promise((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`worker exited ${code} before it was ready: ${this.stderr}`)));
    });
  }

  kill(): void {
    const c = this.child;
    this.child = undefined;
    if (c?.pid && c.exitCode === null) {
      try {
        process.kill(-c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }

  async run(job: Job, hardMs: number): Promise<ObjResult> {
    if (!this.child) await this.start();
    const child = this.child!;
    rmSync(job.progressFile, { force: true });
    const partial = (): ObjResult => {
      try {
        return JSON.parse(readFileSync(job.progressFile, 'utf8')) as ObjResult;
      } catch {
        return { name: job.name, file: job.file, sized: [], programs: [], onlyTsbpf: [], onlyLibbpf: [], ms: 0 };
      }
    };
    return new Promise((resolve) => {
      let done = false;
      const finish = (r: ObjResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        child.off('message', onMsg);
        child.off('exit', onExit);
        resolve(r);
      };
      const onMsg = (m: ObjResult) => finish(m);
      const onExit = (code: number | null, signal: string | null) => {
        this.child = undefined;
        const r = partial();
        const last = this.stderr.trim().split('\n').slice(-6).join(' | ');
        r.aborted = { how: 'crash', step: r.step ?? '?', message: clip(`worker exited (${signal ?? `code ${code}`}) ${last}`, 400) };
        removePinDir(job.pinDir);
        finish(r);
      };
      const timer = setTimeout(() => {
        child.off('exit', onExit);
        this.kill();
        const r = partial();
        r.aborted = { how: 'timeout', step: r.step ?? '?', message: `no result after ${Math.round(hardMs / 1000)} s` };
        r.ms = hardMs;
        removePinDir(job.pinDir);
        finish(r);
      }, hardMs);
      child.on('message', onMsg);
      child.once('exit', onExit);
      child.send(job);
    });
  }
}

// ---------------------------------------------------------------- classification

const PROG_TYPE: Record<number, string> = {
  0: 'unspec', 1: 'socket_filter', 2: 'kprobe', 3: 'sched_cls', 4: 'sched_act', 5: 'tracepoint', 6: 'xdp', 7: 'perf_event',
  8: 'cgroup_skb', 9: 'cgroup_sock', 10: 'lwt_in', 11: 'lwt_out', 12: 'lwt_xmit', 13: 'sock_ops', 14: 'sk_skb',
  15: 'cgroup_device', 16: 'sk_msg', 17: 'raw_tracepoint', 18: 'cgroup_sock_addr', 19: 'lwt_seg6local', 20: 'lirc_mode2',
  21: 'sk_reuseport', 22: 'flow_dissector', 23: 'cgroup_sysctl', 24: 'raw_tracepoint_writable', 25: 'cgroup_sockopt',
  26: 'tracing', 27: 'struct_ops', 28: 'ext', 29: 'lsm', 30: 'sk_lookup', 31: 'syscall', 32: 'netfilter',
};

export const CAT = {
  trampoline: 'trampoline program: EPERM on this kernel',
  target: 'attach target missing in 6.18',
  userspace: 'needs user space first',
  testmod: 'bpf_testmod kfuncs/ksyms (no module support)',
  ksym: 'kfunc/ksym missing or renamed in 6.18',
  fail: 'written to fail',
  verifier: '6.1 source rejected by the 6.18 verifier',
  kernel: 'kernel refuses (feature/config of this host)',
  lockdown: 'lockdown (integrity): bpf_probe_write_user',
  libbpfOnly: 'libbpf 1.1 refuses what tsbpf loads',
  budget: 'time budget',
  unsupported: 'tsbpf not yet supporting',
  bug: 'tsbpf bug',
  xlated: 'tsbpf bug: translated instructions differ',
  layout: 'subprograms in another order than libbpf (same code)',
  coreTarget: 'CO-RE test: relocates against a target BTF the test supplies',
  kconfigHost: 'LINUX_HAS_SYSCALL_WRAPPER computed differently (libbpf 1.1 probes a kprobe PMU this host lacks)',
  linking: 'needs static linking first (extern defined in another object)',
} as const;

const TRAMPOLINE_TYPES = new Set([26, 28, 29]);
const isTrampolineSection = (s: string) => /^(fentry|fexit|fmod_ret|lsm|freplace)(\.s)?(\/|$)/.test(s.replace(/^\?/, ''));

interface Source {
  text?: string;
  name?: string;
}

/** Is the program annotated as expected to fail (selftests' `__failure`), or in a `SEC("?...")`? */
function writtenToFail(row: ProgRow, obj: ObjResult, src: Source): boolean {
  if (!row.autoload) return true;
  const t = src.text;
  if (t) {
    const at = t.search(new RegExp(`\\b${row.name}\\s*\\(`));
    if (at > 0) {
      const before = t.slice(Math.max(0, t.lastIndexOf('SEC(', at) - 200), at);
      if (/__failure|__msg\(/.test(before)) return true;
    }
  }
  return /(^|_)(fail|bad|invalid|reject)/.test(obj.name) && !/success/.test(obj.name);
}

function failureCategory(row: ProgRow, obj: ObjResult, src: Source): { category: string; note?: string } {
  const texts = [row.libbpf, row.tsbpf].filter((s): s is Side => !!s && !s.ok);
  const text = texts.map((s) => s.error ?? '').join(' || ');
  const eperm = texts.some((s) => s.errno === 1 || /\bEPERM\b|Operation not permitted/.test(s.error ?? ''));
  if (eperm && (TRAMPOLINE_TYPES.has(row.type) || isTrampolineSection(row.section))) return { category: CAT.trampoline };
  const kfunc = /(extern|ksym|kfunc)[^']*'([^']+)'|extern "([^"]+)"|ksym "?([\w]+)"?/.exec(text);
  const kname = kfunc?.[2] ?? kfunc?.[3] ?? kfunc?.[4] ?? '';
  if (/bpf_testmod|bpf_kfunc_call_test|bpf_testmod_test|test_mod|bpf_fentry_test|bpf_testmod_/.test(text) || /testmod|kfunc_call_test/.test(kname)) {
    return { category: CAT.testmod, note: kname || undefined };
  }
  if (/failed to find kernel BTF type ID|attach target .* not found|failed to resolve target|find_kernel_btf_id|failed to find target|ESRCH|No such process/.test(text)) {
    return { category: CAT.target };
  }
  if (/failed to find BTF for extern|is neither in \.kconfig nor in \.ksyms/.test(text) && /(^|_)(multispec|linked|lib\d?|subskeleton|static_linked\d)/.test(obj.name)) {
    return { category: CAT.linking };
  }
  if (/failed to find the address for kernel symbol|not in \/proc\/kallsyms/.test(text)) return { category: CAT.ksym, note: kname || undefined };
  if (/not found in kernel or module BTFs|failed to find BTF for extern|extern .*(not found|unresolved|missing)|unknown (ksym|kfunc)|kernel function .* is not|calling kernel function .* is not allowed/.test(text)) {
    return { category: CAT.ksym, note: kname || undefined };
  }
  if (/bpf_probe_write_user|unknown func bpf_probe_write_user/.test(text)) return { category: CAT.lockdown };
  if (/failed to resolve CO-RE relocation|CO-RE relocation .*(failed|cannot|not found)|core.*relocat/i.test(text)) {
    if (/ @ btf__core_reloc_\w*___err_/.test(obj.name)) return { category: CAT.fail, note: 'target BTF made to fail relocation' };
    if (/^test_core_(reloc_|autosize)/.test(obj.name) && !obj.name.includes(' @ ')) return { category: CAT.coreTarget };
  }
  if (writtenToFail(row, obj, src) && !(row.libbpf?.ok ?? true)) return { category: CAT.fail };
  if (/missing BPF prog type|failed to guess program type|attach_prog_fd|target prog|freplace|inner map|inner_map|map fd|prog_fd|BPF_PROG_TYPE_EXT|struct_ops/i.test(text) || row.type === 0) {
    return { category: CAT.userspace };
  }
  if (/too large|too complex|E2BIG|Argument list too long/.test(text)) return { category: CAT.verifier, note: 'program too large/complex for the verifier' };
  if (texts.some((s) => s.kind === 'VerifierError' || s.errno === 13 || /Permission denied|EACCES|verifier/.test(s.error ?? ''))) {
    return { category: CAT.verifier };
  }
  return { category: CAT.kernel };
}

/** A more specific name for a failure of tsbpf where libbpf loads the program. */
function bugLabel(t: Side, src: Source): string {
  const e = t.error ?? '';
  const ext = /extern (\w+) \(strong|extern (\w+): unknown LINUX_/.exec(e);
  const extName = ext?.[1] ?? ext?.[2];
  if (extName && src.text && new RegExp(`\\b${extName}\\b[^;]*__weak`).test(src.text)) return `${CAT.bug}: __weak extern treated as strong`;
  if (/BTF_LOAD failed.*Invalid offset/.test(e)) return `${CAT.bug}: DATASEC offsets rewritten in a statically linked object`;
  if (/two functions are named/.test(e)) return `${CAT.bug}: same-named static functions (statically linked object)`;
  if (/attach target .* not found in kernel BTF/.test(e) && / @ btf__/.test(src.name ?? '')) {
    return `${CAT.bug}: the CO-RE target BTF (kernelBtf) is also used for attach targets (libbpf's btf_custom_path is for CO-RE only)`;
  }
  if (/\(RINGBUF\).*MAP_CREATE.*EINVAL/.test(e)) return `${CAT.bug}: ringbuf size not rounded up to a power-of-2 page multiple`;
  return `${CAT.bug}: ${t.kind ?? 'error'}`;
}

function classify(obj: ObjResult, src: Source): void {
  for (const row of obj.programs) {
    row.category = undefined;
    row.note = undefined;
    const L = row.libbpf;
    const T = row.tsbpf;
    if (!L || !T) {
      if (obj.budgetLeft?.includes(row.name) || obj.aborted) {
        row.category = obj.aborted?.how === 'crash' ? CAT.bug : CAT.budget;
        row.note = obj.aborted ? `${obj.aborted.how} during ${obj.aborted.step}` : 'not examined within the time budget';
      }
      continue;
    }
    if (L.ok && T.ok) {
      if (row.diff && !row.diff.identical) {
        row.category = row.diff.reordered ? CAT.layout : row.diff.kconfig ? CAT.kconfigHost : CAT.xlated;
        row.note = row.diff.summary;
      }
      continue;
    }
    if (L.ok && !T.ok) {
      if (/^struct_ops/.test(row.section) || row.type === 27) {
        row.category = `${CAT.unsupported}: struct_ops`;
        row.note = `tsbpf loads a struct_ops program without its struct_ops map, and reports the kernel's ENOTSUPP as a VerifierError: ${T.error}`;
      } else if (T.kind === 'NotSupportedError') {
        const what = /CO-RE/.test(T.error ?? '') ? 'CO-RE relocations' : /extern|ksym|kfunc|kconfig/i.test(T.error ?? '') ? 'externs (kconfig/ksyms/kfuncs)' : (T.error ?? '').replace(/^kernel lacks /, '').split(':')[0];
        row.category = `${CAT.unsupported}: ${what}`;
      } else if (T.kind === 'missing') {
        row.category = bugLabel(T, src);
        row.note = `program missing from the spec: ${T.error}`;
      } else {
        row.category = bugLabel(T, src);
        row.note = T.error;
      }
      continue;
    }
    const f = failureCategory(row, obj, src);
    row.category = f.category;
    row.note = f.note;
    if (!L.ok && T.ok) {
      // libbpf refuses, tsbpf loads.
      row.category = CAT.libbpfOnly;
      row.note = L.error;
    }
  }
}

// ---------------------------------------------------------------- report

const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function versions(): Record<string, string> {
  const first = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return (r.stdout || r.stderr || '').trim().split('\n');
  };
  const bt = first('bpftool', ['version']);
  const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() ?? '?';
  const dirty = (spawnSync('git', ['-C', ROOT, 'status', '--porcelain', 'src'], { encoding: 'utf8' }).stdout ?? '').trim() ? ' (+ uncommitted changes in src/)' : '';
  return {
    kernel: first('uname', ['-r'])[0],
    clang: first(process.env.CLANG ?? 'clang-19', ['--version'])[0],
    bpftool: `${bt[0]}, ${bt.find((l) => /libbpf/.test(l)) ?? ''}`.trim(),
    node: process.version,
    tsbpf: `${git}${dirty}`,
  };
}

function objSummary(o: ObjResult): { compared: number; identical: number; differ: ProgRow[] } {
  const compared = o.programs.filter((p) => p.diff);
  return { compared: compared.length, identical: compared.filter((p) => p.diff!.identical).length, differ: compared.filter((p) => !p.diff!.identical) };
}

function side(s: Side | undefined, asIs = false): string {
  if (!s) return '—';
  if (s.ok) return 'yes';
  const e = (s.error ?? '').replace(/(failed: E[A-Z0-9]+) \(.*$/, '$1');
  return `no: ${esc(clip(asIs ? e : `${s.kind && !['load', 'open'].includes(s.kind) ? `${s.kind}: ` : ''}${e}`, 140))}`;
}

function renderReport(results: ObjResult[], pairs: ObjResult[], build: { total: number; compiled: number; failed: { name: string; error?: string }[]; linked: number }, ver: Record<string, string>, budgetS: number): string {
  const progs = results.flatMap((o) => o.programs.map((p) => ({ o, p })));
  const count = (f: (o: ObjResult) => boolean) => results.filter(f).length;
  const pcount = (f: (p: ProgRow) => boolean) => progs.filter(({ p }) => f(p)).length;
  const cats = new Map<string, { objects: Set<string>; programs: number }>();
  for (const { o, p } of progs) {
    if (!p.category) continue;
    const c = cats.get(p.category) ?? { objects: new Set(), programs: 0 };
    c.objects.add(o.name);
    c.programs++;
    cats.set(p.category, c);
  }
  const objCats = (o: ObjResult): string => {
    const m = new Map<string, number>();
    for (const p of o.programs) if (p.category) m.set(p.category, (m.get(p.category) ?? 0) + 1);
    const parts = [...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([c, n]) => `${c}${o.programs.length > 1 ? ` ×${n}` : ''}`);
    if (o.aborted) parts.unshift(`${o.aborted.how === 'crash' ? CAT.bug : CAT.budget}: ${o.aborted.how} during ${o.aborted.step}`);
    if (o.fdLeak) parts.push(`${CAT.bug}: ${o.fdLeak} fd(s) leaked`);
    if (o.onlyLibbpf.length) parts.push(`${CAT.bug}: tsbpf misses program(s) ${o.onlyLibbpf.join(', ')}`);
    if (o.programs.length === 0 && !o.openError && !o.aborted) parts.push('no programs (BTF/data fixture)');
    if (o.openError && o.programs.length === 0) parts.push(`libbpf cannot open it`);
    return parts.join('; ');
  };

  const out: string[] = [];
  out.push('# tsbpf compatibility: the kernel\'s BPF selftests, libbpf vs tsbpf');
  out.push('');
  out.push('Generated by `npm run compat` (scripts/compat.ts); do not edit by hand. Regenerate with:');
  out.push('');
  out.push('```sh');
  out.push('npm run compat            # corpus cache: $TSBPF_CORPUS_DIR, default /var/cache/tsbpf-corpus');
  out.push('```');
  out.push('');
  out.push(`Corpus: \`tools/testing/selftests/bpf/progs/*.c\` of Debian's \`linux-source-6.1\`, compiled with the selftests' flags ` +
    `(${build.compiled} of ${build.total} compile; plus ${build.linked} objects statically linked with \`bpftool gen object\` as the selftests' Makefile lists them). ` +
    `Each object is loaded by libbpf and by tsbpf on the same kernel; for every program both load, the translated instructions ` +
    `(\`BPF_OBJ_GET_INFO_BY_FD\` xlated) are compared instruction by instruction, map references by map name and offset ` +
    `(scripts/compat-xlated.ts). Time budget: ${budgetS} s per object, each object in a worker process.`);
  out.push('');
  out.push(`Kernel \`${ver.kernel}\` · ${ver.clang} · bpftool \`${ver.bpftool}\` · Node ${ver.node} · tsbpf \`${ver.tsbpf}\``);
  out.push('');
  out.push('## Summary');
  out.push('');
  const withProgs = results.filter((o) => o.programs.length > 0);
  const bothWhole = count((o) => !!o.libbpf?.ok && !!o.tsbpf?.ok);
  const allIdentical = results.filter((o) => {
    const s = objSummary(o);
    return s.compared > 0 && s.differ.length === 0;
  }).length;
  out.push('| | objects | programs |');
  out.push('|---|---:|---:|');
  out.push(`| examined (compiled objects) | ${results.length} | |`);
  out.push(`| with programs (the others are BTF/data fixtures) | ${withProgs.length} | ${progs.length} |`);
  out.push(`| libbpf loads, \`bpftool prog loadall\` as is | ${count((o) => !!o.asIs?.ok)} | |`);
  out.push(`| **libbpf loads** (the two \`loadall\` artefacts discounted; programs: loaded whole or alone) | **${count((o) => !!o.libbpf?.ok)}** | ${pcount((p) => !!p.libbpf?.ok)} |`);
  out.push(`| **tsbpf loads** (same sizing) | **${count((o) => !!o.tsbpf?.ok)}** | ${pcount((p) => !!p.tsbpf?.ok)} |`);
  out.push(`| both load | ${bothWhole} | ${pcount((p) => !!p.libbpf?.ok && !!p.tsbpf?.ok)} |`);
  out.push(`| libbpf loads, tsbpf does not | ${count((o) => !!o.libbpf?.ok && !o.tsbpf?.ok)} | ${pcount((p) => !!p.libbpf?.ok && p.tsbpf?.ok === false)} |`);
  out.push(`| tsbpf loads, libbpf does not | ${count((o) => !o.libbpf?.ok && !!o.tsbpf?.ok && o.programs.length > 0)} | ${pcount((p) => p.libbpf?.ok === false && !!p.tsbpf?.ok)} |`);
  out.push(`| programs compared (both loaded) | | ${pcount((p) => !!p.diff)} |`);
  out.push(`| **xlated identical** (objects: every compared program) | **${allIdentical}** | **${pcount((p) => !!p.diff?.identical)}** |`);
  out.push(`| xlated differ only in the order of subprograms (same functions, same code) | ${count((o) => objSummary(o).differ.length > 0 && objSummary(o).differ.every((p) => p.diff!.reordered))} | ${pcount((p) => !!p.diff && !p.diff.identical && !!p.diff.reordered)} |`);
  out.push(`| xlated differ only by LINUX_HAS_SYSCALL_WRAPPER (identical when tsbpf is given libbpf's host-probed value) | ${count((o) => objSummary(o).differ.some((p) => !!p.diff!.kconfig))} | ${pcount((p) => !!p.diff?.kconfig)} |`);
  out.push(`| **xlated differ otherwise** (unexplained) | ${count((o) => objSummary(o).differ.some((p) => !p.diff!.reordered && !p.diff!.kconfig))} | ${pcount((p) => !!p.diff && !p.diff.identical && !p.diff.reordered && !p.diff.kconfig)} |`);
  out.push(`| worker crashed / out of time | ${count((o) => o.aborted?.how === 'crash')} / ${count((o) => o.aborted?.how === 'timeout')} | |`);
  out.push('');
  out.push('## Why programs differ or fail, by category');
  out.push('');
  out.push('Every program that is not "both load, identical" has one category (the reason on the failing side; when both fail, the common cause).');
  out.push('');
  out.push('| category | objects | programs |');
  out.push('|---|---:|---:|');
  for (const [c, v] of [...cats].sort((a, b) => b[1].programs - a[1].programs || (a[0] < b[0] ? -1 : 1))) {
    out.push(`| ${esc(c)} | ${v.objects.size} | ${v.programs} |`);
  }
  out.push('');
  out.push('Categories: *trampoline program* — fentry/fexit/fmod_ret/lsm/freplace get EPERM before the verifier runs on this kernel; ' +
    '*written to fail* — `__failure` programs, `SEC("?…")` programs, `*_fail`/`*bad*` objects and `___err_*` CO-RE targets that the tests expect to be rejected; ' +
    '*needs user space first* — program type chosen at run time (custom section names), freplace target program, inner-map fd; ' +
    '*bpf_testmod* — kfuncs/ksyms of the selftests\' kernel module (this kernel has no module support); ' +
    '*CO-RE test* — `test_core_reloc_*` programs relocate against `btf__core_reloc_*` BTFs the test supplies, not vmlinux (see the CO-RE section below, where they are loaded that way); ' +
    '*kfunc/ksym missing or renamed*, *attach target missing* — 6.1 tests naming kernel symbols 6.18 no longer has (or lacks in kallsyms); ' +
    '*6.1 source rejected by the 6.18 verifier* — both loaders get the same verifier rejection (including programs too large or complex); ' +
    '*needs static linking first* — halves of multi-file objects (the linked objects are examined too); ' +
    '*subprograms in another order* — the same functions with the same code, laid out in another order (a check kept since tsbpf moved to the depth-first layout libbpf uses; expected to be 0); ' +
    '*LINUX_HAS_SYSCALL_WRAPPER* — identical once tsbpf is given the value libbpf 1.1 probes with a kprobe perf event, which this host lacks (tsbpf says 1, which is right for x86-64 6.18); ' +
    '*libbpf 1.1 refuses what tsbpf loads* — legacy `maps` section, a `.maps` layout from one-pass `bpftool gen object` linking; ' +
    '*tsbpf not yet supporting* — struct_ops; *tsbpf bug* — tsbpf fails (or crashes) where libbpf loads, or the kernel holds different instructions.');
  out.push('');
  out.push('## Objects');
  out.push('');
  out.push('| object | libbpf loads | tsbpf loads | programs compared | xlated identical | reasons for differences |');
  out.push('|---|---|---|---|---|---|');
  for (const o of results) {
    const s = objSummary(o);
    const reord = s.differ.filter((p) => p.diff!.reordered).length;
    const kconf = s.differ.filter((p) => p.diff!.kconfig).length;
    const firstReal = s.differ.find((p) => !p.diff!.reordered && !p.diff!.kconfig) ?? s.differ[0];
    const why = [reord ? `${reord === s.differ.length ? 'all' : reord} only in subprogram order` : '', kconf ? `${kconf === s.differ.length ? 'all' : kconf} only by ${s.differ.find((p) => p.diff!.kconfig)!.diff!.kconfig} (libbpf's value)` : '']
      .filter(Boolean).join(', ');
    const ident = s.compared === 0 ? '—' : s.differ.length === 0 ? 'yes'
      : `${s.differ.length} differ${why ? ` (${why})` : ''}: ${esc(clip(`${firstReal.name}: ${firstReal.diff!.summary}`, 160))}`;
    out.push(`| ${o.name} | ${side(o.libbpf)} | ${side(o.tsbpf)} | ${s.compared}/${o.programs.length} | ${ident} | ${esc(objCats(o))} |`);
  }
  out.push('');
  if (pairs.length) {
    const ok = (o: ObjResult) => o.programs.length > 0 && o.programs.every((p) => p.diff?.identical);
    const same = (o: ObjResult) => o.programs.every((p) => (p.libbpf?.ok ?? false) === (p.tsbpf?.ok ?? false));
    out.push('## CO-RE against the selftests\' target BTFs');
    out.push('');
    out.push('Each `test_core_reloc_*` object relocated by both loaders against every `btf__core_reloc_*` fixture the selftests use for it ' +
      '(libbpf: `btf_custom_path`; tsbpf: `kernelBtf`), then loaded into this kernel. `___err_*` targets are meant to fail relocation. ' +
      `${pairs.length} pairs: both load and identical ${pairs.filter(ok).length}; same outcome (load or fail) on both sides ${pairs.filter(same).length}; ` +
      `libbpf loads, tsbpf does not ${pairs.filter((o) => o.programs.some((p) => p.libbpf?.ok && p.tsbpf?.ok === false)).length}; ` +
      `tsbpf loads, libbpf does not ${pairs.filter((o) => o.programs.some((p) => p.libbpf?.ok === false && p.tsbpf?.ok)).length}.`);
    out.push('');
    out.push('| object @ target BTF | libbpf | tsbpf | xlated | reason |');
    out.push('|---|---|---|---|---|');
    for (const o of pairs) {
      const p = o.programs[0];
      const s = objSummary(o);
      const ident = s.compared === 0 ? '—' : s.differ.length === 0 ? 'identical' : esc(clip(s.differ[0].diff!.summary, 140));
      out.push(`| ${esc(o.name)} | ${side(p?.libbpf ?? o.libbpf)} | ${side(p?.tsbpf ?? o.tsbpf)} | ${ident} | ${esc(objCats(o))} |`);
    }
    out.push('');
  }
  out.push('## Details');
  out.push('');
  out.push('Programs that are not "both load, identical", per object (libbpf / tsbpf outcome, then the category).');
  out.push('');
  for (const o of [...results, ...pairs]) {
    const bad = o.programs.filter((p) => p.category);
    if (!bad.length && !o.aborted && !o.fdLeak && !o.onlyLibbpf.length) continue;
    out.push(`### ${o.name}`);
    out.push('');
    if (o.asIs && !o.asIs.ok) out.push(`- \`bpftool prog loadall\` as is: ${esc(clip(o.asIs.error ?? '', 200))}`);
    if (o.sized.length) out.push(`- sized for both loaders: ${o.sized.join(', ')}`);
    if (o.aborted) out.push(`- **${o.aborted.how}** during ${o.aborted.step}: ${esc(o.aborted.message)}`);
    if (o.fdLeak) out.push(`- **tsbpf left ${o.fdLeak} fd(s) open** after closing every collection`);
    if (o.onlyLibbpf.length) out.push(`- programs libbpf lists that tsbpf's spec lacks: ${o.onlyLibbpf.join(', ')}`);
    if (o.onlyTsbpf.length) out.push(`- programs tsbpf's spec has that libbpf does not list: ${o.onlyTsbpf.join(', ')}`);
    for (const p of bad) {
      const l = p.libbpf ? (p.libbpf.ok ? 'loads' : `fails (${esc(clip(p.libbpf.error ?? '', 160))})`) : 'not tried';
      const t = p.tsbpf ? (p.tsbpf.ok ? 'loads' : `fails (${p.tsbpf.kind}: ${esc(clip(p.tsbpf.error ?? '', 160))})`) : 'not tried';
      const diff = p.diff && !p.diff.identical ? `; xlated: ${esc(p.diff.summary)}` : '';
      const note = p.note && !diff && p.note !== p.tsbpf?.error && p.note !== p.libbpf?.error ? ` (${esc(clip(p.note, 120))})` : '';
      out.push(`- \`${p.name}\` (\`${p.autoload ? '' : '?'}${p.section}\`${p.type >= 0 ? `, ${PROG_TYPE[p.type] ?? p.type}` : ''}): libbpf ${l}; tsbpf ${t}${diff} — **${esc(p.category!)}**${note}`);
      if (p.diff && !p.diff.identical) out.push('', '  ```', ...p.diff.detail.split('\n').map((x) => `  ${x.trim() ? x : ''}`), '  ```');
    }
    out.push('');
  }
  if (build.failed.length) {
    out.push('## Sources that did not compile');
    out.push('');
    for (const f of build.failed) out.push(`- ${f.name}: \`${esc(clip(f.error ?? '', 200))}\``);
    out.push('');
  }
  return out.join('\n');
}

// ---------------------------------------------------------------- main

/** The sources of a statically linked object, concatenated (from the selftests' Makefile). */
function linkedSource(selftests: string, name: string): string | undefined {
  if (!name.endsWith('.linked')) return undefined;
  const mk = readFileSync(join(selftests, 'Makefile'), 'utf8');
  const m = new RegExp(`^${name.replace(/\.linked$/, '')}\\.skel\\.h-deps := (.+)$`, 'm').exec(mk);
  if (!m) return undefined;
  return m[1].trim().split(/\s+/).map((d) => {
    const p = join(selftests, 'progs', d.replace(/\.bpf\.o$/, '.c'));
    return existsSync(p) ? readFileSync(p, 'utf8') : '';
  }).join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (k: string) => {
    const i = args.indexOf(k);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const only = opt('--only') ? new RegExp(opt('--only')!) : undefined;
  const budgetS = Number(opt('--budget') ?? 20);
  const jobs = Number(opt('--jobs') ?? 2);
  const outFile = opt('--out') ?? (only ? undefined : join(ROOT, 'docs', 'compat.md'));
  const { prepareCorpus, buildCorpus, CORPUS_DIR } = await import('./compat-corpus.js');

  if (process.getuid?.() !== 0) throw new Error('run as root (loads BPF programs)');
  if (spawnSync('mountpoint', ['-q', BPF_FS]).status !== 0) {
    mkdirSync(BPF_FS, { recursive: true });
    const m = spawnSync('mount', ['-t', 'bpf', 'bpf', BPF_FS]);
    if (m.status !== 0) throw new Error(`${BPF_FS} is not a bpffs and mounting it failed`);
  }

  const corpus = prepareCorpus(CORPUS_DIR);
  const built = await buildCorpus(corpus, jobs, only ? (n) => only.test(n) : undefined);
  const helper = buildLibbpfHelper(join(corpus.dir, 'helper'));
  if ('error' in helper) throw new Error(helper.error);
  const failedBuild = built.filter((b) => !b.path);
  const objects: { name: string; file: string; btf?: string; pair?: boolean }[] = built.filter((b) => b.path).map((b) => ({ name: b.name, file: b.path! }));
  // CO-RE with known targets: each test_core_reloc_X against the btf__core_reloc_X* fixtures the selftests relocate it to.
  const fixtures = built.filter((b) => b.path && b.name.startsWith('btf__core_reloc_'));
  if (!only) {
    for (const b of fixtures.length ? readdirSync(corpus.objDir).filter((f) => f.startsWith('test_core_reloc_') && f.endsWith('.bpf.o')).sort() : []) {
      const name = b.replace(/\.bpf\.o$/, '');
      const base = name.replace(/^test_core_reloc_/, '').replace(/_(direct|probed)$/, '');
      for (const f of fixtures) {
        const fb = `btf__core_reloc_${base}`;
        if (f.name === fb || f.name.startsWith(`${fb}___`)) objects.push({ name: `${name} @ ${f.name}`, file: join(corpus.objDir, b), btf: f.path!, pair: true });
      }
    }
  }
  process.stderr.write(`compat: ${objects.length} loads to examine (${objects.filter((o) => o.pair).length} CO-RE object/target pairs), ${jobs} worker(s), ${budgetS} s budget each\n`);

  const resultsFile = join(corpus.dir, 'compat-results.json');
  const runDir = join(corpus.dir, 'run');
  mkdirSync(runDir, { recursive: true });
  const workers = Array.from({ length: Math.max(1, jobs) }, (_, i) => new Worker(i, join(runDir, `progress-${i}.json`)));
  // --from-results: re-classify and re-render the last run's results without loading anything.
  const fromResults = args.includes('--from-results');
  const results: ObjResult[] = fromResults ? (JSON.parse(readFileSync(resultsFile, 'utf8')) as ObjResult[]) : new Array(objects.length);
  let next = fromResults ? objects.length : 0;
  let finished = 0;
  const started = Date.now();
  await Promise.all(
    workers.map(async (w) => {
      while (next < objects.length) {
        const k = next++;
        const b = objects[k];
        const job: Job = {
          name: b.name,
          file: b.file,
          btf: b.btf,
          pinDir: join(BPF_FS, `tsbpf-compat-${process.pid}-${w.id}`),
          budgetMs: budgetS * 1000,
          helper: helper.path,
          progressFile: w.progressFile,
        };
        removePinDir(job.pinDir);
        const r = await w.run(job, budgetS * 1000 * 2 + 10_000);
        results[k] = r;
        finished++;
        const s = objSummary(r);
        process.stderr.write(
          `[${finished}/${objects.length}] ${b.name}: libbpf ${r.libbpf?.ok ? 'yes' : 'no'}, tsbpf ${r.tsbpf?.ok ? 'yes' : `no (${r.tsbpf?.kind ?? '?'})`}, ` +
            `${s.identical}/${s.compared} identical${r.aborted ? `, ${r.aborted.how.toUpperCase()} in ${r.aborted.step}` : ''} [${(r.ms / 1000).toFixed(1)}s]\n`,
        );
      }
    }),
  );
  for (const w of workers) w.kill();

  for (const r of results) {
    const base = r.name.split(' @ ')[0];
    const srcPath = r.file.includes('/linked/') ? undefined : join(corpus.selftests, 'progs', `${base}.c`);
    classify(r, { name: r.name, text: linkedSource(corpus.selftests, base) ?? (srcPath && existsSync(srcPath) ? readFileSync(srcPath, 'utf8') : undefined) });
  }
  writeFileSync(resultsFile, JSON.stringify(results, null, 1));
  const pairs = results.filter((r) => r.name.includes(' @ '));
  const main = results.filter((r) => !r.name.includes(' @ '));
  const ver = versions();
  const report = renderReport(
    main,
    pairs,
    {
      total: built.filter((b) => !b.linked).length,
      compiled: built.filter((b) => !b.linked && b.path).length,
      failed: failedBuild,
      linked: built.filter((b) => b.linked && b.path).length,
    },
    ver,
    budgetS,
  );
  if (outFile) {
    writeFileSync(outFile, report + '\n');
    process.stderr.write(`compat: wrote ${outFile}\n`);
  }
  const progs = main.flatMap((o) => o.programs);
  process.stderr.write(
    `compat: ${main.length} objects (+ ${pairs.length} CO-RE pairs) in ${Math.round((Date.now() - started) / 1000)} s: libbpf loads ${main.filter((o) => o.libbpf?.ok).length}, ` +
      `tsbpf loads ${main.filter((o) => o.tsbpf?.ok).length}; programs compared ${progs.filter((p) => p.diff).length}, ` +
      `identical ${progs.filter((p) => p.diff?.identical).length}; results in ${resultsFile}\n`,
  );
}

if (process.argv.includes('--worker')) {
  await worker();
} else {
  await main();
}
