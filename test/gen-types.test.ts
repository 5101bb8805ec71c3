import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, obj, childEnv } from './helpers/env.js';
import { loadCollectionSpec } from '../src/elf/index.js';
import { generateTypes } from '../src/cli/gen-types.js';

// The generated modules live in a directory inside the repository (so they are ES modules like the rest,
// and `--import-from ../../src/index.js` reaches our sources), removed afterwards.
const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');
const RUNNER = `import { genCommand } from ${JSON.stringify(join(ROOT, 'src', 'cli', 'gen-types.ts'))};
for (const args of JSON.parse(process.argv[1])) {
  const code = await genCommand(args);
  if (code !== 0) { process.exitCode = code; break; }
}`;

t.setTimeout(360_000);

t.test('gen types: declarations that type-check and give typed access to the real objects', async (t) => {
  const dir = mkdtempSync(join(ROOT, 'test', '.gen-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const objects = ['runqlat', 'ringbuf_test', 'runqslower', 'loader'];
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', RUNNER,
    JSON.stringify(objects.map((o) => ['types', obj(`${o}.o`), '-o', join(dir, `${o}.ts`), '--import-from', '../../src/index.js']))], {
    encoding: 'utf8', timeout: 180_000, env: childEnv, cwd: ROOT,
  });
  t.equal(r.status, 0, r.stderr);
  const runqlat = readFileSync(join(dir, 'runqlat.ts'), 'utf8');
  t.match(runqlat, /export interface Hist \{\n {2}slots: number\[\];\n {2}comm: string;\n\}/, 'struct hist: u32[26] → number[], char[16] → string');
  t.match(runqlat, /hists: TypedMap<number, Hist>;/);
  t.match(runqlat, /start: TypedMap<number, bigint>;/, 'u64 values → bigint');
  t.match(runqlat, /targ_tgid: TypedVariable<number>;/);
  t.match(runqlat, /targ_ms\?: boolean;/, '.rodata bools are settable constants');
  t.match(runqlat, /export function loadRunqlat\(options: RunqlatLoadOptions = \{\}\): RunqlatObjects/);
  t.match(runqlat, /from "\.\.\/\.\.\/src\/index\.js"/, '--import-from');
  const ring = readFileSync(join(dir, 'ringbuf_test.ts'), 'utf8');
  t.match(ring, /export interface Rec16 \{\n {2}seq: number;\n {2}kind: number;\n {2}cookie: bigint;\n\}/, 'record structs named by the object');
  t.match(ring, /export type RingbufTestRecords = Rec16 \| Rec12;/);
  t.match(ring, /rb: BpfMap;/, 'maps without BTF types stay BpfMap');
  t.match(ring, /dropped: TypedVariable<bigint>;/);
  t.match(readFileSync(join(dir, 'runqslower.ts'), 'utf8'), /export interface Event \{\n {2}task: string;\n {2}prev_task: string;\n {2}delta_us: bigint;\n {2}pid: number;\n {2}prev_pid: number;\n\}/);
  t.match(readFileSync(join(dir, 'loader.ts'), 'utf8'), /percpu: TypedMap<number, bigint\[\]>;/, 'per-CPU values are one per CPU');
  t.equal(generateTypes(loadCollectionSpec(obj('runqlat.o')), obj('runqlat.o'), { importFrom: '../../src/index.js', objectPath: '../../bpf/runqlat.o', relativeToModule: true }),
    runqlat.replace(/"\.\.\/\.\.\/bpf\/runqlat\.o"/, JSON.stringify('../../bpf/runqlat.o')), 'the command writes what generateTypes() returns');

  // The generated modules type-check (strict), and a consumer using them wrongly does not.
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    extends: '../../tsconfig.json',
    compilerOptions: { noEmit: true, rootDir: '../..' },
    include: ['./*.ts', '../../src/elf/elfy.d.ts'],
  }));
  writeFileSync(join(dir, 'use.ts'), `import { loadRunqlat, type Hist } from './runqlat.js';
export function use(): string | undefined {
  using o = loadRunqlat({ constants: { targ_tgid: 1 } });
  const h: Hist | undefined = o.maps.hists.get(1);
  const since: bigint | undefined = o.maps.start.get(1);
  const ms: boolean = o.variables.targ_ms.value;
  void since; void ms;
  return h?.comm;
}
`);
  writeFileSync(join(dir, 'misuse.ts'), `import { loadRunqlat } from './runqlat.js';
export function misuse(): void {
  using o = loadRunqlat();
  const wrong: string | undefined = o.maps.start.get(1);
  o.maps.hists.set(1, { slots: 'no', comm: 3 });
  void wrong;
}
`);
  // One tsc run: the generated modules and use.ts must be clean, misuse.ts must fail where expected.
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r2 = spawnSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8', timeout: 240_000 });
  const errors = r2.stdout.split('\n').filter((l) => /error TS/.test(l));
  t.same(errors.filter((l) => !l.includes('misuse.ts')), [], 'the generated modules and a correct consumer type-check (tsc --noEmit, strict)');
  t.match(r2.stdout, /misuse\.ts\(4,\d+\): error TS2322/, 'wrong use is a compile error: bigint is not string');
  t.match(r2.stdout, /misuse\.ts\(5,\d+\): error TS2322/, 'struct members are typed');
  rmSync(join(dir, 'misuse.ts'));

  // The generated module against the real object: load, write and read typed maps and globals.
  // (Typed here by hand: this test file is type-checked before the module exists.)
  interface TypedMap<K, V> { get(k: K): V | undefined; set(k: K, v: V): void; decodedEntries(): Iterable<[K, V]> }
  const mod = (await import(pathToFileURL(join(dir, 'runqlat.ts')).href)) as {
    loadRunqlat(o: { constants: { targ_tgid?: number; targ_ms?: boolean } }): {
      programs: Record<string, unknown>;
      variables: { targ_tgid: { value: number }; targ_ms: { value: boolean } };
      maps: { start: TypedMap<number, bigint>; hists: TypedMap<number, { slots: number[]; comm: string }> };
      [Symbol.dispose](): void;
    };
  };
  {
    using o = mod.loadRunqlat({ constants: { targ_tgid: 4242, targ_ms: true } });
    t.same(Object.keys(o.programs).sort(), ['on_switch', 'on_wakeup', 'on_wakeup_new']);
    t.equal(o.variables.targ_tgid.value, 4242, 'constants set before load');
    t.equal(o.variables.targ_ms.value, true);
    o.maps.start.set(12, 345n);
    t.equal(o.maps.start.get(12), 345n, 'u64 value as bigint');
    o.maps.hists.set(3, { slots: [9, 8, 7], comm: 'typed' });
    const h = o.maps.hists.get(3);
    t.equal(h?.comm, 'typed');
    t.same(h?.slots.slice(0, 4), [9, 8, 7, 0]);
    t.same([...o.maps.hists.decodedEntries()].map(([k]) => k), [3]);
  }
  const ringMod = (await import(pathToFileURL(join(dir, 'ringbuf_test.ts')).href)) as {
    loadRingbufTest: () => { programs: Record<string, { run(o: { ctx: Buffer }): { retval: number } }>; variables: { dropped: { value: bigint } }; close(): void };
  };
  const rb = ringMod.loadRingbufTest();
  try {
    const ctx = Buffer.alloc(16);
    ctx.writeUInt32LE(4, 0);
    t.equal(rb.programs.submit_n.run({ ctx }).retval, 0);
    t.equal(rb.variables.dropped.value, 0n, 'a u64 global reads as bigint');
  } finally {
    rb.close();
  }
});
