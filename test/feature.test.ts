import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, childEnv, fdCount } from './helpers/env.js';
import {
  closeProbeResources, probeHelper, probeKernelFeatures, probeMapType, probeProgramType, type FeatureReport,
} from '../src/features/probe.js';
import { BPF_FUNC, BPF_MAP_TYPE, BPF_PROG_TYPE } from '../src/syscall/kernel-defs.generated.js';
import { ownedFdCount } from '../src/syscall/fd.js';

const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');
const RUNNER = `import { featureCommand } from ${JSON.stringify(join(ROOT, 'src', 'cli', 'feature.ts'))}; process.exitCode = await featureCommand(process.argv.slice(1));`;

t.test('probes are fast, cached, and leave no fd behind', (t) => {
  const fds = fdCount();
  const owned = ownedFdCount();
  const t0 = Date.now();
  const r = probeKernelFeatures();
  closeProbeResources();
  const took = Date.now() - t0;
  t.ok(took < 20_000, `probed in ${took} ms`);
  t.equal(fdCount(), fds, 'no fd leaked');
  t.equal(ownedFdCount(), owned);
  const t1 = Date.now();
  t.equal(probeKernelFeatures(), r, 'cached per process');
  t.ok(Date.now() - t1 < 50);
  // What every kernel tsbpf runs on has, and what it cannot have.
  t.equal(r.programTypes.socket_filter, true);
  t.equal(r.programTypes.kprobe, true);
  t.equal(r.programTypes.syscall, true, 'sleepable-only types are probed as sleepable');
  t.equal(r.programTypes.tracing, true, 'types that need an attach target are probed through the verifier\'s attach checks');
  t.equal(r.mapTypes.hash, true);
  t.equal(r.mapTypes.ringbuf, true);
  t.equal(r.mapTypes.sk_storage, true, 'map types that need BTF key/value types');
  t.equal(r.mapTypes.array_of_maps, true, 'map-in-map types with an inner map');
  t.equal(probeProgramType(250), false, 'an unknown program type');
  t.equal(probeMapType(250), false, 'an unknown map type');
  t.equal(probeHelper(BPF_PROG_TYPE.SOCKET_FILTER, 100_000), false, 'an unknown helper');
  t.equal(probeHelper(BPF_PROG_TYPE.KPROBE, BPF_FUNC.map_lookup_elem), true);
  t.equal(probeHelper(BPF_PROG_TYPE.SOCKET_FILTER, BPF_FUNC.redirect), false, 'a packet-forwarding helper is not for socket filters');
  t.equal(probeHelper(BPF_PROG_TYPE.KPROBE, BPF_FUNC.skb_store_bytes), false, 'a packet helper is not for kprobes');
  t.ok(r.helpers.xdp.includes('bpf_redirect') && r.helpers.kprobe.includes('bpf_get_current_comm'));
  t.ok(r.linkTypes.includes('tracing') && r.linkTypes.includes('perf_event'));
  t.ok(r.attachTypes.includes('trace_fentry'));
  t.equal(fdCount(), fds, 'still no fd leaked');
  t.end();
});

interface BpftoolFeatures {
  program_types: Record<string, boolean>;
  map_types: Record<string, boolean>;
  helpers: Record<string, string[]>;
}

t.test('tsbpf feature --json agrees with `bpftool feature probe kernel`', (t) => {
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', RUNNER, '--', '--json'], { encoding: 'utf8', timeout: 180_000, env: childEnv, cwd: ROOT });
  t.equal(r.status, 0, r.stderr);
  const ours = JSON.parse(r.stdout) as FeatureReport;
  const bt = JSON.parse(execFileSync('bpftool', ['-j', 'feature', 'probe', 'kernel'], { encoding: 'utf8', timeout: 120_000 })) as BpftoolFeatures;
  // bpftool (libbpf ≤ 1.1) probes tracing, ext and lsm programs without an attach target, which every kernel
  // refuses: it says "no" where the kernel has them (our probe reaches the verifier's attach checks). Newer
  // libbpf probes them like we do.
  const probeDiffers = new Set(['tracing', 'ext', 'lsm']);
  let compared = 0;
  for (const [name, have] of Object.entries(ours.programTypes)) {
    const theirs = bt.program_types[`have_${name}_prog_type`];
    if (theirs === undefined) continue; // a type this bpftool does not know (netfilter, ...)
    compared++;
    if (probeDiffers.has(name) && theirs === false) continue;
    t.equal(have, theirs, `program type ${name}`);
  }
  t.ok(compared >= 25, `${compared} program types compared`);
  compared = 0;
  for (const [name, have] of Object.entries(ours.mapTypes)) {
    const theirs = bt.map_types[`have_${name}_map_type`];
    if (theirs === undefined) continue;
    compared++;
    t.equal(have, theirs, `map type ${name}`);
  }
  t.ok(compared >= 25, `${compared} map types compared`);
  t.ok(Object.keys(BPF_MAP_TYPE).length > 30);
  // Helpers: bpftool decides by the verifier's message for an unknown/disallowed helper. Whatever we find
  // available, it does too; it may list more: its message matching predates the kernel's "program of this
  // type cannot use helper" wording, so on newer kernels it counts refused helpers as available.
  // Helpers newer than this bpftool (it cannot name them) are left out of the comparison, and the ones
  // bpftool skips because probing them writes to dmesg (unless `full`).
  const ids = BPF_FUNC as Record<string, number>;
  const bpftoolMax = Math.max(...Object.values(bt.helpers).flat().map((h) => ids[h.replace(/^bpf_/, '')] ?? 0));
  const skipped = new Set(['bpf_trace_printk', 'bpf_trace_vprintk', 'bpf_probe_write_user']);
  for (const [type, helpers] of Object.entries(ours.helpers)) {
    const theirs = bt.helpers[`${type}_available_helpers`];
    if (!theirs) continue;
    const set = new Set(theirs);
    const missing = helpers.filter((h) => !set.has(h) && !skipped.has(h) && ids[h.replace(/^bpf_/, '')] <= bpftoolMax);
    t.same(missing, [], `${type}: our helpers are a subset of bpftool's`);
    t.ok(helpers.length > 20, `${type}: ${helpers.length} helpers (bpftool: ${theirs.length})`);
  }
  t.end();
});
