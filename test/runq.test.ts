// runqlat.o and runqslower.o: our CO-RE objects (task_struct read through BPF_CORE_READ, a ___flavor
// fallback that the loader must poison on this kernel), loaded, attached to the scheduler tracepoints and
// checked against real scheduling activity: histograms from runqlat, perf events from runqslower.
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { openSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import {
  loadCollectionSpec, setVariable, getVariable, Collection, autoAttach, MapType, ProgramType, ownedFdCount, loadKernelBtf,
  type Link, type CollectionSpec,
} from '../src/index.js';
import {
  perfEventOpen, mmap, PROT_READ, PROT_WRITE, PERF_TYPE, PERF_COUNT_SW, PERF_SAMPLE, PERF_RECORD, LAYOUTS,
  onlineCpus, possibleCpus, type FD, type Mapping,
} from '../src/syscall/index.js';
import { applyCoreRelocations } from '../src/btf/core.js';
import { obj, ROOT } from './helpers/env.js';
import { join } from 'node:path';

const MAX_SLOTS = 26;
const COMM_LEN = 16;
const HIST_SIZE = MAX_SLOTS * 4 + COMM_LEN; // struct hist
const EVENT_SIZE = 2 * COMM_LEN + 8 + 4 + 4; // struct event
const ALL_KEY = 0xffffffff; // runqlat's key when no per-process/thread/pidns split is asked for

const cstr = (b: Buffer): string => {
  const z = b.indexOf(0);
  return b.subarray(0, z < 0 ? b.length : z).toString('latin1');
};
// a task comm: at most 15 bytes, no control characters (kernel threads have '/', ':' etc.; that's fine)
const printable = (s: string): boolean => s.length > 0 && s.length < COMM_LEN && /^[\x20-\x7e]+$/.test(s);

/** Spawn `n` short-lived children that each sleep a little (fork, exec, block, wake, exit); resolves their pids. */
async function churn(n = 24, waves = 3): Promise<number[]> {
  const pids: number[] = [];
  for (let w = 0; w < waves; w++) {
    await Promise.all(Array.from({ length: n / waves }, () => new Promise<void>((resolve, reject) => {
      const c = spawn('/bin/sh', ['-c', 'sleep 0.01; sleep 0.01'], { stdio: 'ignore' });
      if (c.pid) pids.push(c.pid);
      c.on('error', reject);
      c.on('exit', () => resolve());
    })));
    // and some wakeups of our own threads
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
  }
  return pids;
}

function attachAll(coll: Collection, spec: CollectionSpec): Link[] {
  return Object.keys(coll.programs).map((name) => autoAttach(coll.programs[name], spec.programs[name]));
}

interface Hist { key: number; slots: number[]; total: number; comm: string }

function readHists(coll: Collection): Hist[] {
  const out: Hist[] = [];
  for (const [k, v] of coll.maps.hists.entries()) {
    const b = v as Buffer;
    const slots = Array.from({ length: MAX_SLOTS }, (_, i) => b.readUInt32LE(i * 4));
    out.push({ key: k.readUInt32LE(0), slots, total: slots.reduce((a, c) => a + c, 0), comm: cstr(b.subarray(MAX_SLOTS * 4)) });
  }
  return out;
}

t.test('spec: programs, maps, globals and CO-RE relocations as the objects declare them', (t) => {
  const lat = loadCollectionSpec(obj('runqlat.o'));
  t.same(Object.keys(lat.programs).sort(), ['on_switch', 'on_wakeup', 'on_wakeup_new']);
  for (const [name, tp] of [['on_wakeup', 'sched_wakeup'], ['on_wakeup_new', 'sched_wakeup_new'], ['on_switch', 'sched_switch']]) {
    const p = lat.programs[name];
    t.equal(p.type, ProgramType.RAW_TRACEPOINT, `runqlat ${name} is raw_tp`);
    t.equal(p.attachTo, tp);
    t.ok(p.coreRelos.length >= 2, `runqlat ${name} has ${p.coreRelos.length} CO-RE relocations`);
  }
  t.equal(lat.maps.hists.type, MapType.HASH);
  t.equal(lat.maps.hists.keySize, 4);
  t.equal(lat.maps.hists.valueSize, HIST_SIZE);
  t.equal(lat.maps.start.type, MapType.HASH);
  t.equal(lat.maps.cgroup_map.type, MapType.CGROUP_ARRAY);
  for (const v of ['targ_per_process', 'targ_per_thread', 'targ_per_pidns', 'targ_ms', 'filter_cg']) {
    t.equal(getVariable(lat, v).length, 1, `${v} is a 1-byte bool`);
    t.equal(getVariable(lat, v)[0], 0, `${v} defaults to false`);
  }
  t.equal(getVariable(lat, 'targ_tgid').readInt32LE(0), 0);

  const slow = loadCollectionSpec(obj('runqslower.o'));
  t.same(Object.keys(slow.programs).sort(), ['on_switch', 'on_wakeup', 'on_wakeup_new']);
  for (const p of Object.values(slow.programs)) {
    t.equal(p.type, ProgramType.TRACING, `runqslower ${p.name} is tp_btf`);
    t.equal(p.sectionKind, 'tp_btf');
  }
  // __state exists check + __state read + the ___pre514 "state" fallback, then pid, tgid, comm...
  t.ok(slow.programs.on_switch.coreRelos.length >= 6, `runqslower on_switch has ${slow.programs.on_switch.coreRelos.length} CO-RE relocations`);
  t.equal(slow.maps.events.type, MapType.PERF_EVENT_ARRAY);
  t.equal(slow.maps.start.type, MapType.HASH);
  t.equal(getVariable(slow, 'min_us').readBigUInt64LE(0), 10000n);
  t.equal(getVariable(slow, 'targ_pid').readInt32LE(0), 0);
  t.equal(getVariable(slow, 'targ_tgid').readInt32LE(0), 0);
  t.end();
});

t.test('CO-RE against this kernel: as libbpf does, only the task_struct___pre514 "state" fallback is poisoned', (t) => {
  const sameKernel = readFileSync(join(ROOT, 'bpf', 'vmlinux.h'), 'latin1').slice(0, 300).includes(`(Linux ${release()})`);
  if (!sameKernel) t.comment(`bpf/vmlinux.h is not from ${release()}: offsets may move, not compared`);
  for (const file of ['runqslower.o', 'runqlat.o']) {
    const spec = loadCollectionSpec(obj(file));
    for (const p of Object.values(spec.programs)) {
      const insns = Buffer.from(p.instructions);
      const res = applyCoreRelocations(insns, p.coreRelos, spec.btf!, [loadKernelBtf()], { programName: p.name });
      t.same(res.filter((r) => r.fatal).map((r) => r.description), [], `${file} ${p.name}: nothing fatal`);
      const poisoned = res.filter((r) => r.poisoned).map((r) => r.description);
      if (p.name === 'on_switch') {
        t.equal(poisoned.length, 1, `${file} on_switch: one poisoned relocation (${poisoned.join(', ')})`);
        t.match(poisoned[0] ?? '', /task_struct___pre514.*state/, 'the pre-5.14 state flavor');
        const exists = res.find((r) => r.kindName.includes('exists'));
        t.equal(exists && Number(exists.targetValue), 1, 'bpf_core_field_exists(task_struct.__state) = 1');
      } else {
        t.same(poisoned, [], `${file} ${p.name}: nothing poisoned`);
      }
      // on the kernel vmlinux.h was generated from, every resolved offset equals what the compiler put there
      if (!sameKernel) continue;
      const moved = res.filter((r) => r.ok && !r.poisoned && r.targetValue !== undefined && BigInt(r.targetValue) !== BigInt(r.localValue ?? -1));
      t.same(moved.map((r) => r.description), [], `${file} ${p.name}: offsets unchanged on the kernel vmlinux.h came from`);
    }
  }
  t.end();
});

t.test('runqlat per process: every child we spawned gets a histogram, counts and comms are plausible', async (t) => {
  const spec = loadCollectionSpec(obj('runqlat.o'));
  setVariable(spec, 'targ_per_process', true);
  const coll = new Collection(spec);
  t.teardown(() => coll.close());
  const links = attachAll(coll, spec);
  let pids: number[];
  try {
    pids = await churn();
  } finally {
    for (const l of links) l.close();
  }
  const hists = readHists(coll);
  const total = hists.reduce((a, h) => a + h.total, 0);
  t.ok(hists.length >= pids.length, `${hists.length} processes seen`);
  t.ok(total > 100, `${total} run-queue waits counted`);
  const keys = new Set(hists.map((h) => h.key));
  t.ok(keys.has(process.pid), 'our own process has a histogram');
  const missing = pids.filter((p) => !keys.has(p));
  t.same(missing, [], `each of the ${pids.length} children was timed at least once (wakeup_new -> switch)`);
  t.ok(hists.every((h) => h.total > 0), 'no empty histogram');
  t.ok(hists.every((h) => printable(h.comm)), 'every per-process histogram carries a printable comm');
  t.notOk(keys.has(0), 'the idle task is never timed');
  // microseconds: with this little load most waits are under a second, and some are at least 2 us
  const merged = Array.from({ length: MAX_SLOTS }, (_, i) => hists.reduce((a, h) => a + h.slots[i], 0));
  t.ok(merged.slice(0, 20).reduce((a, c) => a + c, 0) > total * 0.9, 'over 90% of waits below 2^20 us');
  t.ok(merged.slice(1).some((c) => c > 0), 'some waits fall beyond the 0 -> 1 us bucket');
  t.ok(merged.filter((c) => c > 0).length >= 3, `waits spread over ${merged.filter((c) => c > 0).length} log2 buckets`);
});

t.test('runqlat default: one histogram under key 0xffffffff; targ_ms moves waits into the low buckets', async (t) => {
  const run = async (ms: boolean): Promise<Hist[]> => {
    const spec = loadCollectionSpec(obj('runqlat.o'));
    if (ms) setVariable(spec, 'targ_ms', true);
    using coll = new Collection(spec);
    const links = attachAll(coll, spec);
    try {
      await churn(12, 2);
    } finally {
      for (const l of links) l.close();
    }
    return readHists(coll);
  };
  const us = await run(false);
  t.same(us.map((h) => h.key), [ALL_KEY], 'a single histogram');
  t.equal(us[0].comm, '', 'no comm without a per-process/thread split');
  t.ok(us[0].total > 50, `${us[0].total} waits`);
  const ms = await run(true);
  t.same(ms.map((h) => h.key), [ALL_KEY]);
  const low = ms[0].slots.slice(0, 4).reduce((a, c) => a + c, 0);
  t.ok(low > ms[0].total * 0.9, `in msecs ${low}/${ms[0].total} waits are below 16 ms`);
  t.ok(ms[0].slots[0] > us[0].slots[0], 'msecs put more waits in the 0 -> 1 bucket than usecs');
});

t.test('runqlat targ_tgid + per thread: only our own threads are timed', async (t) => {
  const spec = loadCollectionSpec(obj('runqlat.o'));
  setVariable(spec, 'targ_per_thread', true);
  setVariable(spec, 'targ_tgid', process.pid);
  using coll = new Collection(spec);
  const links = attachAll(coll, spec);
  try {
    await churn(12, 2);
  } finally {
    for (const l of links) l.close();
  }
  const hists = readHists(coll);
  const ours = new Set(readdirSync('/proc/self/task').map(Number));
  t.ok(hists.length >= 1, `${hists.length} of our threads seen`);
  t.ok(hists.some((h) => h.key === process.pid), 'the main thread (tid = pid) is among them');
  const strangers = hists.filter((h) => !ours.has(h.key)).map((h) => `${h.key} ${h.comm}`);
  t.same(strangers, [], 'every key is a thread of this process');
  t.ok(hists.every((h) => printable(h.comm)), 'thread comms are printable');
});

t.test('runqlat per pid namespace: our namespace inode is a key', async (t) => {
  const spec = loadCollectionSpec(obj('runqlat.o'));
  setVariable(spec, 'targ_per_pidns', true);
  using coll = new Collection(spec);
  const links = attachAll(coll, spec);
  try {
    await churn(6, 1);
  } finally {
    for (const l of links) l.close();
  }
  const inode = Number(/\[(\d+)\]/.exec(execFileSync('readlink', ['/proc/self/ns/pid'], { encoding: 'utf8' }))![1]);
  const hists = readHists(coll);
  t.ok(hists.some((h) => h.key === inode && h.total > 0), `pidns ${inode} has a histogram (keys: ${hists.map((h) => h.key).join(', ')})`);
});

t.test('runqlat filter_cg: nothing without a cgroup, everything under the root cgroup', async (t) => {
  const cg2 = ['/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((p) => {
    try {
      return readdirSync(p).includes('cgroup.procs');
    } catch {
      return false;
    }
  });
  const run = async (cgroupDir: string | undefined): Promise<number> => {
    const spec = loadCollectionSpec(obj('runqlat.o'));
    setVariable(spec, 'filter_cg', true);
    using coll = new Collection(spec);
    if (cgroupDir) {
      const fd = openSync(cgroupDir, 'r');
      try {
        coll.maps.cgroup_map.update(0, Buffer.from(new Uint32Array([fd]).buffer));
      } finally {
        closeSync(fd);
      }
    }
    const links = attachAll(coll, spec);
    try {
      await churn(6, 1);
    } finally {
      for (const l of links) l.close();
    }
    return readHists(coll).reduce((a, h) => a + h.total, 0);
  };
  t.equal(await run(undefined), 0, 'empty cgroup_map: no event passes the filter');
  if (!cg2) {
    t.comment('no cgroup v2 hierarchy mounted: only the empty-map case was checked');
    return;
  }
  const n = await run(cg2);
  t.ok(n > 20, `root cgroup ${cg2}: ${n} waits counted`);
});

// ---- runqslower: a minimal perf ring reader, only for this test (the real reader is a later issue) ----

const MMAP_PAGE = LAYOUTS.perf_event_mmap_page.fields;
const OFF = {
  head: MMAP_PAGE.data_head[0],
  tail: MMAP_PAGE.data_tail[0],
  dataOffset: MMAP_PAGE.data_offset[0],
  dataSize: MMAP_PAGE.data_size[0],
};
const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;

interface Ring { cpu: number; fd: FD; map: Mapping }
interface Event { task: string; prevTask: string; deltaUs: bigint; pid: number; prevPid: number; cpu: number }

function openRings(coll: Collection, dataPages = 16): Ring[] {
  const rings: Ring[] = [];
  const online = new Set(onlineCpus());
  try {
    for (const cpu of possibleCpus()) {
      if (!online.has(cpu)) continue; // perf_event_open on an offline CPU fails with ENODEV
      const fd = perfEventOpen({
        type: PERF_TYPE.SOFTWARE, config: PERF_COUNT_SW.BPF_OUTPUT, sample_type: PERF_SAMPLE.RAW,
        sample_period: 1, wakeup_events: 1,
      }, -1, cpu);
      let map: Mapping;
      try {
        map = mmap(fd.value, (1 + dataPages) * PAGE, PROT_READ | PROT_WRITE);
      } catch (e) {
        fd.close();
        throw e;
      }
      rings.push({ cpu, fd, map });
      coll.maps.events.update(cpu, Buffer.from(new Uint32Array([fd.value]).buffer));
    }
  } catch (e) {
    closeRings(rings);
    throw e;
  }
  return rings;
}

function closeRings(rings: Ring[]): void {
  for (const r of rings) {
    r.map.unmap();
    r.fd.close();
  }
}

/** Consume every record between data_tail and data_head; returns the raw sample payloads and the lost count. */
function drain(r: Ring): { samples: Buffer[]; lost: bigint } {
  const v = r.map.view;
  const base = Number(v.readBigUInt64LE(OFF.dataOffset)) || PAGE;
  const size = Number(v.readBigUInt64LE(OFF.dataSize)) || v.length - PAGE;
  const head = v.readBigUInt64LE(OFF.head);
  let tail = v.readBigUInt64LE(OFF.tail);
  // copy `n` bytes at ring position `pos`, across the wrap-around
  const at = (pos: bigint, n: number): Buffer => {
    const off = Number(pos % BigInt(size));
    if (off + n <= size) return Buffer.from(v.subarray(base + off, base + off + n));
    return Buffer.concat([v.subarray(base + off, base + size), v.subarray(base, base + n - (size - off))]);
  };
  const samples: Buffer[] = [];
  let lost = 0n;
  while (tail < head) {
    const hdr = at(tail, 8);
    const type = hdr.readUInt32LE(0);
    const len = hdr.readUInt16LE(6);
    if (len < 8) throw new Error(`corrupt perf record at ${tail}: size ${len}`);
    const rec = at(tail, len);
    if (type === PERF_RECORD.SAMPLE) {
      const rawSize = rec.readUInt32LE(8); // PERF_SAMPLE_RAW: u32 size, then the bytes (padded to 8)
      samples.push(rec.subarray(12, 12 + rawSize));
    } else if (type === PERF_RECORD.LOST) {
      lost += rec.readBigUInt64LE(16); // u64 id, u64 lost
    }
    tail += BigInt(len);
  }
  v.writeBigUInt64LE(tail, OFF.tail);
  return { samples, lost };
}

function decode(raw: Buffer, cpu: number): Event {
  return {
    task: cstr(raw.subarray(0, COMM_LEN)),
    prevTask: cstr(raw.subarray(COMM_LEN, 2 * COMM_LEN)),
    deltaUs: raw.readBigUInt64LE(2 * COMM_LEN),
    pid: raw.readInt32LE(2 * COMM_LEN + 8),
    prevPid: raw.readInt32LE(2 * COMM_LEN + 12),
    cpu,
  };
}

/** Load runqslower with `vars`, attach, open the rings, churn, drain as we go; everything closed on return. */
async function runqslower(vars: Record<string, number | bigint>): Promise<{ events: Event[]; rawSizes: Set<number>; lost: bigint; pids: number[] }> {
  const spec = loadCollectionSpec(obj('runqslower.o'));
  for (const [k, v] of Object.entries(vars)) setVariable(spec, k, v);
  using coll = new Collection(spec);
  const rings = openRings(coll);
  const events: Event[] = [];
  const rawSizes = new Set<number>();
  let lost = 0n;
  const collect = () => {
    for (const r of rings) {
      const d = drain(r);
      lost += d.lost;
      for (const s of d.samples) {
        rawSizes.add(s.length);
        events.push(decode(s, r.cpu));
      }
    }
  };
  let links: Link[] = [];
  let pids: number[] = [];
  try {
    links = attachAll(coll, spec);
    const timer = setInterval(collect, 5);
    try {
      pids = await churn();
    } finally {
      clearInterval(timer);
    }
    for (const l of links) l.close();
    links = [];
    collect();
  } finally {
    for (const l of links) l.close();
    closeRings(rings);
  }
  return { events, rawSizes, lost, pids };
}

t.test('runqslower min_us=1: perf events through BPF_F_CURRENT_CPU, decoded and plausible', async (t) => {
  const fds = ownedFdCount();
  const { events, rawSizes, lost, pids } = await runqslower({ min_us: 1n });
  t.ok(events.length > 20, `${events.length} events (${lost} lost)`);
  for (const s of rawSizes) t.ok(s >= EVENT_SIZE && s <= EVENT_SIZE + 7, `raw sample size ${s} = struct event (${EVENT_SIZE}) + padding`);
  const bad = events.filter((e) => !(e.deltaUs > 1n && e.deltaUs < 10_000_000n && e.pid > 0 && e.prevPid >= 0 && printable(e.task) && printable(e.prevTask)));
  t.same(bad.slice(0, 5), [], 'every event: 1 us < delta < 10 s, pid > 0, prev_pid >= 0, printable comms');
  t.ok(events.some((e) => e.prevPid > 0), 'some events replace a real task, not only idle');
  t.ok(new Set(events.map((e) => e.cpu)).size >= Math.min(2, onlineCpus().length) || events.length < 50, 'events come from more than one CPU');
  const ourTids = new Set(readdirSync('/proc/self/task').map(Number));
  const seen = new Set(events.map((e) => e.pid));
  t.ok([...seen].some((p) => ourTids.has(p) || pids.includes(p)), 'our own threads or children appear as switched-in tasks');
  t.equal(ownedFdCount(), fds, 'every fd (rings, maps, programs, links) closed');
});

t.test('runqslower filters: targ_tgid keeps only our threads; a huge min_us lets nothing through', async (t) => {
  const ours = await runqslower({ min_us: 0n, targ_tgid: process.pid });
  t.ok(ours.events.length > 0, `${ours.events.length} events for tgid ${process.pid}`);
  const tids = new Set(readdirSync('/proc/self/task').map(Number));
  const strangers = ours.events.filter((e) => !tids.has(e.pid)).map((e) => `${e.pid} ${e.task}`);
  t.same(strangers, [], 'every switched-in task is one of our threads');

  const none = await runqslower({ min_us: 60_000_000n });
  t.equal(none.events.length, 0, 'no run-queue wait above a minute');
});
