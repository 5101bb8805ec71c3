import t from 'tap';
import { readFileSync } from 'node:fs';
import { loadCollectionSpec, setVariable, Collection, attachIter, autoAttachTracing, autoAttachTracingSupport, IterLink, ClosedError } from '../src/index.js';
import { obj, fdCount } from './helpers/env.js';

const spec = loadCollectionSpec(obj('tracing_test.o'));
setVariable(spec, 'target_tgid', process.pid);
const comm = readFileSync('/proc/self/comm', 'utf8').trim();

t.test('iter/task lists this process with its comm, as a stream of chunks', async (t) => {
  using coll = new Collection(spec, { programs: ['dump_task'] });
  using link = attachIter(coll.programs.dump_task);
  t.equal(link.target, 'task', 'the link knows its target (from link info)');
  t.equal(link.info().typeName, 'iter');
  const text = await link.text();
  const lines = text.trimEnd().split('\n');
  t.ok(lines.length > 3, `one line per process (${lines.length})`);
  t.ok(lines.includes(`${process.pid} ${comm}`), `"${process.pid} ${comm}" is listed`);

  // Small chunks: many read() syscalls, the event loop runs between them.
  let chunks = 0;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  const parts: Buffer[] = [];
  for await (const c of link.read({ chunkSize: 128 })) {
    chunks++;
    parts.push(c);
    t.ok(c.length <= 128);
  }
  clearInterval(timer);
  t.ok(chunks > 5, `read in ${chunks} chunks`);
  t.ok(ticks > 0, 'timers ran while reading');
  t.ok(Buffer.concat(parts).toString().includes(`${process.pid} ${comm}\n`));
  t.ok(link.readAllSync().toString().includes(`${process.pid} ${comm}\n`), 'readAllSync too');
});

t.test('iter/bpf_map_elem over a hash map prints its entries', async (t) => {
  using coll = new Collection(spec, { programs: ['dump_hash'] });
  const m = coll.maps.iter_hash;
  const key = (k: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(k); return b; };
  const val = (v: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return b; };
  for (const [k, v] of [[1, 10n], [2, 20n], [42, 1n << 40n]] as const) m.update(key(k), val(v));
  using link = attachIter(coll.programs.dump_hash, { map: m });
  t.equal(link.target, 'bpf_map_elem');
  const lines = (await link.text()).trimEnd().split('\n').sort();
  t.same(lines, ['1=10', '2=20', `42=${1n << 40n}`]);
  m.delete(key(2));
  t.same((await link.text()).trimEnd().split('\n').sort(), ['1=10', `42=${1n << 40n}`], 'every read walks again');
  t.throws(() => attachIter(coll.programs.dump_hash), { name: 'TsbpfError', message: /needs attachIter\(prog, \{ map \}\)/ }, 'a map iterator without a map is refused, with a hint');
});

t.test('breaking out closes the iterator fd; closing the link refuses new reads; no fd leak', async (t) => {
  const before = fdCount();
  {
    using coll = new Collection(spec, { programs: ['dump_task'] });
    const link = attachIter(coll.programs.dump_task);
    const inLink = fdCount();
    for await (const _ of link.read({ chunkSize: 64 })) break;
    t.equal(fdCount(), inLink, 'the fd of an abandoned walk is closed');
    const ac = new AbortController();
    const it = link.read({ chunkSize: 64, signal: ac.signal });
    await it.next();
    ac.abort(new Error('enough'));
    await t.rejects(it.next(), { message: 'enough' }, 'an abort signal stops the walk');
    t.equal(fdCount(), inLink);
    const fd = link.open();
    t.ok(fd.value > 0, 'open() gives a raw iterator fd');
    fd.close();
    link.close();
    t.ok(link.closed);
    t.throws(() => link.open(), ClosedError);
    await t.rejects(link.readAll(), ClosedError);
  }
  t.equal(fdCount(), before, 'links, programs, maps and iterator fds all closed');
});

t.test('auto-attach of iter sections creates the link (map iterators need their map)', async (t) => {
  using coll = new Collection(spec, { programs: ['dump_task', 'dump_hash'] });
  t.equal(autoAttachTracingSupport(spec.programs.dump_task), undefined);
  t.match(autoAttachTracingSupport(spec.programs.dump_hash), /needs a map/);
  t.equal(autoAttachTracingSupport(spec.programs.xdp_rewrite), null, 'not an iterator section: not mine');
  t.equal(autoAttachTracing(coll.programs.xdp_rewrite as never, spec.programs.xdp_rewrite), undefined);
  const l = autoAttachTracing(coll.programs.dump_task, spec.programs.dump_task);
  t.ok(l instanceof IterLink);
  const link = l as IterLink;
  t.match(await link.text(), new RegExp(`^${process.pid} `, 'm'));
  link.close();
  const h = autoAttachTracing(coll.programs.dump_hash, spec.programs.dump_hash, { iter: { map: coll.maps.iter_hash } }) as IterLink;
  t.equal(await h.text(), '', 'empty map: no output');
  h.close();
});
