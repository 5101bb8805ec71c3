import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, obj, childEnv } from './helpers/env.js';
import { loadCollectionSpec } from '../src/elf/index.js';
import { Collection } from '../src/collection/collection.js';
import { autoAttach } from '../src/links/auto.js';
import type { Link } from '../src/links/link.js';
import { BpfMap, MapType } from '../src/maps/map.js';
import { bpfFdHolders, dumpMap } from '../src/cli/list.js';

// One child runs several subcommands (each through the function the `tsbpf` entry point wires), output
// separated by a marker: one spawn instead of four.
const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');
const MARK = '\n--8<-- tsbpf --8<--\n';
const RUNNER = `import * as l from ${JSON.stringify(join(ROOT, 'src', 'cli', 'list.ts'))};
const cmds = JSON.parse(process.argv[1]);
for (const [c, ...args] of cmds) {
  const code = await (c === 'prog' ? l.progCommand(args) : c === 'map' ? l.mapCommand(args) : l.linkCommand(args));
  process.stdout.write(${JSON.stringify(MARK)} + code + ${JSON.stringify(MARK)});
}`;

function runAll(cmds: string[][]): { outputs: string[]; codes: number[]; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', RUNNER, JSON.stringify(cmds)], {
    encoding: 'utf8', timeout: 240_000, maxBuffer: 1 << 26, env: childEnv, cwd: ROOT,
  });
  const parts = r.stdout.split(MARK);
  const outputs: string[] = [];
  const codes: number[] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    outputs.push(parts[i]);
    codes.push(Number(parts[i + 1]));
  }
  return { outputs, codes, stderr: r.stderr, status: r.status };
}

function bpftool<T>(...args: string[]): T {
  return JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8', timeout: 60_000 })) as T;
}

type Row = Record<string, unknown>;

t.test('prog/map/link list show what this process created, like bpftool; map dump decodes through BTF', (t) => {
  const coll = new Collection(loadCollectionSpec(obj('runqlat.o')));
  const links: Link[] = [];
  t.teardown(() => {
    for (const l of links) l.close();
    coll.close();
  });
  const spec = coll.spec;
  const got = autoAttach(coll.programs.on_wakeup, spec.programs.on_wakeup);
  links.push(...(Array.isArray(got) ? got : [got]));
  const hists = coll.maps.hists;
  hists.set(7, { slots: [1, 2, 3], comm: 'seven' });
  hists.set(0xffffffff, { slots: Array(26).fill(5), comm: '' });
  const progId = coll.programs.on_wakeup.info().id;
  const histsId = hists.info().id;
  const linkId = links[0].info().id;

  const r = runAll([['prog', 'list', '--json'], ['map', 'list', '--json'], ['link', 'list', '--json'], ['map', 'dump', String(histsId)], ['map', 'dump', 'id', String(histsId), '--json']]);
  t.equal(r.status, 0, r.stderr);
  t.same(r.codes, [0, 0, 0, 0, 0], r.stderr);
  const [progs, maps, linksOut] = r.outputs.slice(0, 3).map((s) => JSON.parse(s) as Row[]);

  const me = (row: Row | undefined) => (row?.pids as { pid: number; comm: string }[] | undefined)?.some((p) => p.pid === process.pid);
  const p = progs.find((x) => x.id === progId);
  const bp = bpftool<Row[]>('prog', 'show').find((x) => x.id === progId);
  t.ok(p && bp, 'the program is listed by both');
  t.match(p, { type: 'raw_tracepoint', name: 'on_wakeup', tag: bp?.tag, xlatedBytes: bp?.bytes_xlated, jitedBytes: bp?.bytes_jited, btfId: bp?.btf_id });
  t.same(p?.mapIds, bp?.map_ids, 'map ids as bpftool says');
  t.ok(me(p), 'this process holds its fd');
  if (bp?.pids) t.ok((bp.pids as Row[]).some((x) => x.pid === process.pid), 'bpftool agrees on the holder');

  const m = maps.find((x) => x.id === histsId);
  const bm = bpftool<Row[]>('map', 'show').find((x) => x.id === histsId);
  t.ok(m && bm, 'the map is listed by both');
  t.match(m, { type: 'hash', name: 'hists', keySize: bm?.bytes_key, valueSize: bm?.bytes_value, maxEntries: bm?.max_entries, btfId: bm?.btf_id, flags: bm?.flags });
  t.ok(me(m));
  // Every map bpftool lists now and ours listed a moment earlier: the ids of this process's maps are in both.
  for (const name of Object.keys(coll.maps)) {
    const id = coll.maps[name].info().id;
    t.ok(maps.some((x) => x.id === id), `map ${name} (id ${id}) listed`);
  }

  const l = linksOut.find((x) => x.id === linkId);
  const bl = bpftool<Row[]>('link', 'show').find((x) => x.id === linkId);
  t.ok(l && bl, 'the link is listed by both');
  t.match(l, { type: 'raw_tracepoint', progId: bl?.prog_id, target: 'sched_wakeup' });
  t.equal(bl?.tp_name, 'sched_wakeup');
  t.ok(me(l));

  const text = r.outputs[3];
  t.match(text, new RegExp(`^map ${histsId} "hists" \\(hash\\): 2 entries, key __u32, value struct hist$`, 'm'));
  t.match(text, /^key: 7 {2}value: \{"slots":\[1,2,3,0,.*\],"comm":"seven"\}$/m, 'struct values decoded through the map\'s BTF');
  const dumped = JSON.parse(r.outputs[4]) as { key: unknown; value: { slots: number[]; comm: string } }[];
  t.same(dumped.find((e) => e.key === 7)?.value.comm, 'seven');
  t.same(dumped.find((e) => e.key === 0xffffffff)?.value.slots, Array(26).fill(5));
  t.end();
});

t.test('map dump without BTF is hex; holders come from /proc fdinfo', (t) => {
  const m = BpfMap.create({ type: MapType.HASH, keySize: 4, valueSize: 3, maxEntries: 4, name: 'tsbpf_hex' });
  t.teardown(() => m.close());
  m.update(Buffer.from([1, 0, 0, 0]), Buffer.from([0xaa, 0xbb, 0xcc]));
  const d = dumpMap(m);
  t.equal(d.btf, false);
  t.same(d.entries.map((e) => [(e.key as Buffer).toString('hex'), (e.value as Buffer).toString('hex')]), [['01000000', 'aabbcc']]);
  // Our own fds are skipped (the listing process holds fds while it lists); a child's view sees them.
  t.notOk(bpfFdHolders().maps.has(m.info().id), 'the scanning process leaves itself out');
  t.end();
});
