// Differential test against libbpf: every program of every bpf/*.o (TSBPF_BPF_DIR
// overrides the directory) that libbpf loads must load with tsbpf too, and the
// kernel must hold the same translated instructions for both (map references
// compared by map name and offset, see scripts/compat-xlated.ts).
//
// libbpf side: `bpftool prog loadall OBJ DIR`; when that fails for the object as a
// whole (a program the kernel rejects, a section name libbpf 1.1 does not know,
// `SEC("?...")` programs), each program is loaded on its own through a small libbpf
// helper (scripts/compat-libbpf.ts). Objects libbpf cannot load at all are skipped
// with libbpf's reason; so are single programs libbpf cannot load.

import t from 'tap';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadCollectionSpec, Collection, Program, type CollectionSpec } from '../src/index.js';
import { BPF_DIR } from './helpers/env.js';
import {
  bpftoolLoadall, buildLibbpfHelper, libbpfList, libbpfLoad, makePinDir, removePinDir, type LibbpfResult,
} from '../scripts/compat-libbpf.js';
import {
  compareXlated, describeDiff, kconfigAlternatives, MapNames, sameUpToLayout, xlatedProgramOf,
} from '../scripts/compat-xlated.js';

const objects = readdirSync(BPF_DIR).filter((f) => f.endsWith('.o')).sort();
const helper = buildLibbpfHelper();

/** What libbpf did with each program: a pin path, or why it could not load it. */
type LibbpfOutcome = { pin: string } | { error: string };

function libbpfSide(path: string, dir: string): {
  mode: string;
  programs: Map<string, LibbpfOutcome>;
  objectError?: string;
} {
  const all = bpftoolLoadall(path, join(dir, 'all'));
  const programs = new Map<string, LibbpfOutcome>();
  if (all.ok) {
    for (const [name, pin] of all.pinned) programs.set(name, { pin });
    return { mode: 'bpftool prog loadall', programs };
  }
  // The object as a whole failed; try each program on its own.
  if ('error' in helper) return { mode: 'bpftool prog loadall', programs, objectError: `${all.reason} (${helper.error}, so programs cannot be loaded one by one)` };
  // libbpf's own list of the object's programs (not tsbpf's: a program tsbpf misses must show up).
  const list = libbpfList(helper.path, path);
  if ('error' in list) return { mode: 'libbpf, one program at a time', programs, objectError: list.error };
  let openError: string | undefined;
  for (const name of list.programs.filter((p) => p.section !== '.text').map((p) => p.name).sort()) {
    const sub = join(dir, name);
    mkdirSync(sub);
    const r: LibbpfResult = libbpfLoad(helper.path, path, sub, { only: name });
    if (r.stage === 'open') {
      openError = r.reason;
      break;
    }
    programs.set(name, r.ok && r.pinned.has(name) ? { pin: r.pinned.get(name)! } : { error: r.reason || 'not pinned' });
  }
  if (openError) return { mode: 'libbpf, one program at a time', programs: new Map(), objectError: openError };
  return { mode: 'libbpf, one program at a time', programs, objectError: `as a whole: ${all.reason}` };
}

for (const file of objects) {
  const path = join(BPF_DIR, file);
  t.test(file, (t) => {
    let spec: CollectionSpec | undefined;
    let specError: unknown;
    try {
      spec = loadCollectionSpec(path);
    } catch (e) {
      specError = e;
    }
    const dir = makePinDir('diff');
    t.teardown(() => removePinDir(dir));
    const lib = libbpfSide(path, dir);
    const loaded = [...lib.programs].filter(([, o]) => 'pin' in o).map(([n]) => n);
    if (lib.objectError) t.comment(`libbpf (${lib.mode}): ${lib.objectError}`);
    if (spec && Object.keys(spec.programs).length === 0 && loaded.length === 0) {
      t.plan(0, `${file} has no programs`);
      return t.end();
    }
    if (loaded.length === 0) {
      const why = [...lib.programs].map(([n, o]) => `${n}: ${'error' in o ? o.error : ''}`);
      t.plan(0, `libbpf cannot load any program of ${file}: ${lib.objectError ?? ''}${why.length ? `; ${why.join('; ')}` : ''}`);
      return t.end();
    }
    if (!spec) {
      t.fail(`libbpf loads ${loaded.join(', ')} but tsbpf cannot parse ${file}: ${String(specError)}`);
      return t.end();
    }
    for (const [name, outcome] of [...lib.programs].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if ('error' in outcome) {
        t.test(name, { skip: `libbpf cannot load it either: ${outcome.error}` }, (t) => t.end());
        continue;
      }
      t.test(name, (t) => {
        if (!spec.programs[name]) {
          t.fail(`libbpf loaded program "${name}", which tsbpf's spec of ${file} does not have (it has: ${Object.keys(spec.programs).join(', ')})`);
          return t.end();
        }
        let coll: Collection;
        try {
          coll = new Collection(loadCollectionSpec(path), { programs: [name] });
        } catch (e) {
          const err = e as Error;
          t.fail(`libbpf loads ${file} ${name} (${lib.mode}), tsbpf does not: ${err.name}: ${err.message}`);
          return t.end();
        }
        t.teardown(() => coll.close());
        const theirs = Program.fromPin(outcome.pin);
        t.teardown(() => theirs.close());
        const names = new MapNames();
        const a = xlatedProgramOf(theirs, names);
        const b = xlatedProgramOf(coll.programs[name], names);
        const d = compareXlated(a.insns, b.insns);
        if (!d.identical) {
          // The one legitimate source of difference: a .kconfig value libbpf computes from this host
          // (LINUX_HAS_SYSCALL_WRAPPER). Identical with libbpf's value → same code for the same inputs.
          for (const alt of kconfigAlternatives(spec)) {
            let again: Collection | undefined;
            try {
              again = new Collection(loadCollectionSpec(path), { programs: [name], kconfig: alt });
              if (compareXlated(a.insns, xlatedProgramOf(again.programs[name], names).insns).identical) {
                t.pass(`${name}: identical once tsbpf is given libbpf's ${JSON.stringify(alt)} (libbpf probes it with a kprobe perf event)`);
                return t.end();
              }
            } catch {
              /* try the next value */
            } finally {
              again?.close();
            }
          }
        }
        const layout = !d.identical && sameUpToLayout(a, b) ? ' (same functions and code, subprograms in another order than libbpf)' : '';
        t.ok(d.identical, `${name}: translated instructions, libbpf vs tsbpf: ${describeDiff(d)}${layout}`);
        t.end();
      });
    }
    t.end();
  });
}
