// Run by test/soak.test.ts under --expose-gc: `cycles` full load/attach/read/detach/close cycles of
// soak.o (maps events (ringbuf), counts (hash), .rodata, .bss; a raw_tp link; a ring buffer reader),
// measuring fds, mappings and RSS after `warmup` cycles and at the end. Prints one JSON line.
//   node --expose-gc --import=@tapjs/typescript/import test/helpers/soak-child.ts <cycles> <warmup>
import { readFileSync } from 'node:fs';
import { loadCollectionSpec, setVariable, Collection, autoAttach, type Link, ownedFdCount, ClosedError } from '../../src/index.js';
import { RingBufReader, waitersIdle, waiterThreads } from '../../src/ringbuf/index.js';
import { rawSyscall, NR } from '../../src/syscall/native.js';
import { pendingPlaceholders } from '../../src/syscall/os.js';
import { obj, fdCount, mappingCount, rssKiB } from './env.js';

const cycles = Number(process.argv[2] ?? 10000);
const warmup = Number(process.argv[3] ?? 200);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('soak-child: run with --expose-gc');

const spec = loadCollectionSpec(obj('soak.o'));
setVariable(spec, 'target_tgid', process.pid);
const pid = process.pid;
const key = Buffer.alloc(4);
key.writeUInt32LE(pid);
const ZERO = Buffer.alloc(4);

interface Probe { fds: number; owned: number; maps: number; bpfMaps: number; rssKiB: number; placeholders: number; waiters: number }

// The ring readers of a process share one waiter thread, started with the first open reader and stopped
// after the last one closes. A keeper reader over a second collection holds it up through most cycles (a
// thread start costs tens of ms on a busy host); every 50th cycle runs without it, so the thread starts
// and stops with that cycle's reader. The keeper is closed at each measurement.
const keeperColl = new Collection(spec, { programs: ['on_getpid'] });
let keeper: RingBufReader | undefined;

async function settle(): Promise<Probe> {
  keeper?.close();
  keeper = undefined;
  // Finalizers run as tasks after a GC: collect, let them run, collect what they freed.
  for (let i = 0; i < 3; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
  }
  await waitersIdle();
  gc!();
  await new Promise((r) => setTimeout(r, 20));
  return { fds: fdCount(), owned: ownedFdCount(), maps: mappingCount(), bpfMaps: bpfMappings(), rssKiB: rssKiB(), placeholders: pendingPlaceholders(), waiters: waiterThreads() };
}

/** Mappings of bpf maps (anon_inode:bpf-map / bpf-ringbuf) and perf events. */
function bpfMappings(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => /bpf|perf_event/.test(l)).length;
}

function isRecord(rec: Buffer, seq: number): boolean {
  return rec.length === 16 && rec.readUInt32LE(0) === seq && rec.readUInt32LE(4) === pid && rec.readBigUInt64LE(8) === BigInt(seq) * 3n + 1n;
}

function fail(msg: string): never {
  throw new Error(`soak cycle: ${msg}`);
}

async function cycle(i: number): Promise<void> {
  if (i % 50 === 0) {
    keeper?.close();
    keeper = undefined;
  } else {
    keeper ??= new RingBufReader(keeperColl.maps.events);
  }
  const coll = new Collection(spec, { programs: ['on_getpid'] });
  const link = autoAttach(coll.programs.on_getpid, spec.programs.on_getpid) as Link; // one raw_tp link
  const reader = new RingBufReader(coll.maps.events);
  try {
    if (i % 50 === 0) {
      // Now and then through the waiter thread: an event that arrives while we await it.
      const timer = setTimeout(() => rawSyscall(NR.getpid), 1);
      let got: Buffer | undefined;
      for await (const rec of reader) {
        got = rec;
        break;
      }
      clearTimeout(timer);
      if (!got || !isRecord(got, 0)) fail(`awaited record ${got?.toString('hex')}`);
    } else {
      rawSyscall(NR.getpid);
      let n = 0;
      reader.read((rec) => {
        if (!isRecord(rec, n)) fail(`record ${rec.toString('hex')}`);
        n++;
      });
      // Other code of this process (a starting worker thread, say) may call getpid too: at least ours.
      if (n < 1) fail(`no record (dropped ${coll.variables.dropped.value})`);
    }
    // Map round trips: the hash map through syscalls, a global through the mmap'ed .bss.
    const counts = coll.maps.counts;
    if (!(counts.lookup(key)!.readBigUInt64LE(0) >= 1n)) fail(`counts[pid] = ${counts.lookup(key)?.toString('hex')}`);
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(BigInt(i));
    counts.update(ZERO, v); // key 0: a tgid the program never counts
    if (counts.lookup(ZERO)?.readBigUInt64LE(0) !== BigInt(i)) fail('counts update lost');
    counts.delete(ZERO);
    // The global round trip runs detached: while the link is up, any getpid() of this process (Node's own
    // threads call it too) bumps seq between our store and our load.
    link.close();
    coll.variables.seq.set(1000 + i);
    if (coll.variables.seq.value !== 1000 + i) fail(`seq ${coll.variables.seq.value} after update`);
  } finally {
    reader.close();
    link.close();
    coll.close();
  }
  if (!reader.closed) fail('reader not closed');
  try {
    reader.read(() => {});
    fail('read after close did not throw');
  } catch (e) {
    if (!(e instanceof ClosedError)) throw e;
  }
}

const t0 = performance.now();
for (let i = 0; i < warmup; i++) await cycle(i);
const start = await settle();
const t1 = performance.now();
let peakMaps = 0;
let peakPlaceholders = 0;
let peakMs = 0;
for (let i = warmup; i < cycles; i++) {
  const c0 = performance.now();
  await cycle(i);
  peakMs = Math.max(peakMs, performance.now() - c0);
  if (i % 500 === 0) {
    peakMaps = Math.max(peakMaps, mappingCount());
    peakPlaceholders = Math.max(peakPlaceholders, pendingPlaceholders());
  }
}
const t2 = performance.now();
const end = await settle();
keeperColl.close();
process.stdout.write(JSON.stringify({
  cycles,
  warmup,
  start,
  end,
  peakMaps,
  peakPlaceholders,
  peakCycleMs: Math.round(peakMs),
  warmupMs: Math.round(t1 - t0),
  measuredMs: Math.round(t2 - t1),
  cyclesPerSec: Math.round(((cycles - warmup) / (t2 - t1)) * 1000 * 10) / 10,
}) + '\n');
