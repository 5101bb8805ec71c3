// Fuzz targets: each takes one input and either returns or throws a tsbpf error. Anything else
// escaping (TypeError, RangeError, a plain Error) is a bug the engine reports as a crash.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Btf } from '../src/btf/btf.js';
import { applyCoreRelocations, CoreCandidateCache } from '../src/btf/core.js';
import { parseBtfExt } from '../src/btf/ext.js';
import { VMLINUX_BTF_PATH } from '../src/btf/kernel.js';
import { cTypeName } from '../src/btf/names.js';
import { linkProgram } from '../src/collection/linker.js';
import { getVariable, loadCollectionSpec } from '../src/elf/index.js';
import { TsbpfError } from '../src/errors.js';
import {
  btfExtLayout,
  btfLayout,
  coreLayout,
  elfLayout,
  frameBtfExt,
  sectionBytes,
  unframeBtfExt,
  type Layout,
} from './mutate.js';

export const TARGET_NAMES = ['elf', 'btf', 'btf-ext', 'core'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface Target {
  name: TargetName;
  run(input: Buffer): void;
  layout(input: Buffer): Layout;
  /** Initial corpus. */
  seeds(corpusDir?: string): Buffer[];
}

// Workers run a transpiled copy of this file elsewhere (see transpileForWorkers); the engine says where the repository is.
const ROOT = process.env.TSBPF_FUZZ_ROOT ?? fileURLToPath(new URL('..', import.meta.url));

/** Every seed object: bpf/*.o, test/fixtures/*.o and, optionally, every .o under `corpusDir`. */
export function seedObjects(corpusDir?: string): { path: string; data: Buffer }[] {
  const paths: string[] = [];
  for (const dir of [join(ROOT, 'bpf'), join(ROOT, 'test', 'fixtures')]) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort()) if (f.endsWith('.o')) paths.push(join(dir, f));
  }
  if (corpusDir) {
    const walk = (dir: string): void => {
      for (const f of readdirSync(dir).sort()) {
        const p = join(dir, f);
        const st = statSync(p);
        if (st.isDirectory()) walk(p);
        else if (f.endsWith('.o') && st.size > 0) paths.push(p);
      }
    };
    walk(corpusDir);
  }
  return paths.map((path) => ({ path, data: readFileSync(path) }));
}

/** Rethrows anything that is not ours; swallows our own errors (the part that threw is done). */
function ours(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof TsbpfError)) throw err;
  }
}

/**
 * Touches the types of `btf` the way users do: every type is looked up and resolved; names, sizes
 * and alignments (the expensive part) are computed for the first ids and a spread of the others.
 */
function walkBtf(btf: Btf, limit = Infinity): void {
  const n = Math.min(btf.length, limit);
  const stride = Math.max(1, Math.floor(n / 32));
  for (let id = 0; id < n; id++) {
    ours(() => {
      const t = btf.type(id);
      if (id < 64 && 'name' in t && t.name) btf.typesByName(t.name);
      btf.resolve(id);
    });
    if (id >= 48 && id % stride !== 0) continue;
    ours(() => void cTypeName(btf, id));
    ours(() => void btf.sizeof(id));
    ours(() => void btf.alignof(id));
  }
}

const elf: Target = {
  name: 'elf',
  run(input) {
    const spec = loadCollectionSpec(input);
    for (const name of Object.keys(spec.variables)) ours(() => void getVariable(spec, name));
    for (const prog of Object.values(spec.programs)) ours(() => void linkProgram(spec, prog));
    for (const m of Object.values(spec.maps)) {
      if (m.keyType !== undefined && spec.btf) ours(() => void spec.btf!.type(m.keyType!));
      if (m.valueType !== undefined && spec.btf) ours(() => void spec.btf!.type(m.valueType!));
    }
    if (spec.btf) walkBtf(spec.btf, 64);
  },
  layout: elfLayout,
  seeds: (dir) => seedObjects(dir).map((s) => s.data),
};

const btf: Target = {
  name: 'btf',
  run(input) {
    const b = Btf.parse(input);
    walkBtf(b);
    // What parses must marshal, and what marshal writes must parse again.
    const raw = b.marshal();
    let again: Btf;
    try {
      again = Btf.parse(raw);
    } catch (err) {
      throw new Error(`marshal() output does not parse again: ${(err as Error).message}`, { cause: err });
    }
    if (again.length !== b.length) throw new Error(`marshal() round trip changed the type count ${b.length} -> ${again.length}`);
  },
  layout: btfLayout,
  seeds(dir) {
    const out: Buffer[] = [];
    for (const s of seedObjects(dir)) {
      const b = sectionBytes(s.data, '.BTF');
      if (b) out.push(Buffer.from(b));
    }
    return out;
  },
};

const btfExt: Target = {
  name: 'btf-ext',
  run(input) {
    const f = unframeBtfExt(input);
    if (!f) return;
    let b: Btf;
    try {
      b = Btf.parse(f.btf);
    } catch (err) {
      if (err instanceof TsbpfError) return; // only the .BTF.ext parser is under test here
      throw err;
    }
    const ext = parseBtfExt(f.ext, b);
    for (const list of ext.coreRelos.values()) for (const r of list) ours(() => void b.type(r.typeId));
  },
  layout: btfExtLayout,
  seeds(dir) {
    const out: Buffer[] = [];
    for (const s of seedObjects(dir)) {
      const b = sectionBytes(s.data, '.BTF');
      const e = sectionBytes(s.data, '.BTF.ext');
      if (b && e) out.push(frameBtfExt(b, e));
    }
    return out;
  },
};

let targetBtfs: { vmlinux: Btf; coreTarget: Btf } | undefined;
function coreTargets(): { vmlinux: Btf; coreTarget: Btf } {
  if (!targetBtfs) {
    const coreTarget = Btf.parse(sectionBytes(readFileSync(join(ROOT, 'bpf', 'core_target.o')), '.BTF')!);
    // Without kernel BTF (a container without /sys/kernel/btf), everything goes against core_target.
    const vmlinux = existsSync(VMLINUX_BTF_PATH) ? Btf.parse(readFileSync(VMLINUX_BTF_PATH)) : coreTarget;
    targetBtfs = { vmlinux, coreTarget };
  }
  return targetBtfs;
}

const core: Target = {
  name: 'core',
  run(input) {
    if (input.length < 2) return;
    const { vmlinux, coreTarget } = coreTargets();
    const target = input[0] === 1 ? coreTarget : vmlinux;
    let spec;
    try {
      spec = loadCollectionSpec(input.subarray(1));
    } catch (err) {
      if (err instanceof TsbpfError) return; // the ELF target covers the loader
      throw err;
    }
    if (!spec.btf) return;
    const cache = new CoreCandidateCache();
    for (const prog of Object.values(spec.programs)) {
      // Programs without CO-RE relocations of their own or calls to subprograms have nothing to do.
      if (prog.coreRelos.length === 0 && !prog.relocations.some((r) => r.kind === 'call')) continue;
      let linked;
      try {
        linked = linkProgram(spec, prog);
      } catch (err) {
        if (err instanceof TsbpfError) continue;
        throw err;
      }
      applyCoreRelocations(linked.insns, linked.coreRelos, spec.btf, [target], { programName: prog.name, cache });
    }
  },
  layout: coreLayout,
  seeds(dir) {
    const out: Buffer[] = [];
    for (const s of seedObjects(dir)) {
      // Only objects with CO-RE relocations: a .BTF.ext with a non-empty core_relo subsection.
      const e = sectionBytes(s.data, '.BTF.ext');
      if (!e || e.length < 32 || e.readUInt32LE(4) < 32 || e.readUInt32LE(28) === 0) continue;
      const self = s.path.endsWith('/core_self.o');
      out.push(Buffer.concat([Buffer.from([self ? 1 : 0]), s.data]));
    }
    return out;
  },
};

export const TARGETS: Record<TargetName, Target> = { elf, btf, 'btf-ext': btfExt, core };

/** Is `err` one of ours (what a target may throw)? */
export function isOurs(err: unknown): boolean {
  return err instanceof TsbpfError;
}

/**
 * Replays one input through a target: undefined when it returned or threw a tsbpf error,
 * otherwise the foreign error.
 */
export function replay(target: TargetName, input: Buffer): unknown {
  try {
    TARGETS[target].run(input);
  } catch (err) {
    if (!isOurs(err)) return err ?? new Error('undefined thrown');
  }
  return undefined;
}
