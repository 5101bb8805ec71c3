import t from 'tap';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { gunzipSync } from 'node:zlib';
import {
  loadCollectionSpec, setVariable, Collection, autoAttach, attachTracing, attachFreplace, autoAttachTracing,
  type Link,
} from '../src/index.js';
import { rawSyscall, NR, E } from '../src/syscall/index.js';
import { functionBtfId } from '../src/programs/program.js';
import { obj, fdCount } from './helpers/env.js';
import { needsKernel, skipReason } from './helpers/features.js';

const spec = loadCollectionSpec(obj('tracing_test.o'));
setVariable(spec, 'target_tgid', process.pid);
const trampolines = skipReason('trampolines');
const lsm = skipReason('bpfLsm');
/** The running kernel's build option `name` ('y', 'm', ...), from /boot/config-* or /proc/config.gz; undefined if unknown. */
function kconfig(name: string): string | undefined {
  let text: string | undefined;
  try {
    text = readFileSync(`/boot/config-${release()}`, 'utf8');
  } catch {
    try {
      text = gunzipSync(readFileSync('/proc/config.gz')).toString('utf8');
    } catch {
      return undefined;
    }
  }
  if (new RegExp(`^# ${name} is not set$`, 'm').test(text)) return 'n';
  return new RegExp(`^${name}=(.*)$`, 'm').exec(text)?.[1];
}
// Before 6.2 fmod_ret may only replace functions on the error-injection list (or LSM hooks), which is
// empty without CONFIG_FUNCTION_ERROR_INJECTION (Debian's 6.1): the verifier says "is not modifiable".
// From 6.2 the kernel also allows the functions it registers for fmod_ret, bpf_modify_return_test among them.
const fmodRet = trampolines || (kconfig('CONFIG_FUNCTION_ERROR_INJECTION') === 'n' &&
  needsKernel(6, 2, 'fmod_ret on bpf_modify_return_test without CONFIG_FUNCTION_ERROR_INJECTION'));
const v = (coll: Collection, name: string) => BigInt(coll.variables[name].value as bigint);
const packet = Buffer.alloc(64, 1);
const XDP_DROP = 1;
const XDP_PASS = 2;

t.test('fentry sees the argument of a kernel function we make the kernel call', { skip: trampolines }, (t) => {
  const before = fdCount();
  {
    using coll = new Collection(spec, { programs: ['on_fentry'] });
    const prog = coll.programs.on_fentry;
    t.equal(prog.info().attachBtfId > 0, true, 'loaded against the BTF id of bpf_fentry_test1');
    using link = autoAttach(prog, spec.programs.on_fentry);
    t.equal(link.info().typeName, 'tracing');
    // BPF_PROG_TEST_RUN of a tracing program makes the kernel call bpf_fentry_test1(1) and friends.
    prog.run();
    t.equal(v(coll, 'fentry_arg'), 1n, 'fentry ran with a = 1');
  }
  t.equal(fdCount(), before);
  t.end();
});

t.test('fexit reads the return value', { skip: trampolines }, (t) => {
  using coll = new Collection(spec, { programs: ['on_fexit'] });
  using _l = attachTracing(coll.programs.on_fexit, 'bpf_fentry_test1', 'fexit');
  coll.programs.on_fexit.run();
  t.equal(v(coll, 'fexit_ret'), 2n, 'bpf_fentry_test1(1) returned 2');
  t.end();
});

t.test('fmod_ret replaces the return value of bpf_modify_return_test', { skip: fmodRet }, (t) => {
  using coll = new Collection(spec, { programs: ['on_fmod_ret'] });
  const prog = coll.programs.on_fmod_ret;
  // The test run of an fmod_ret program calls bpf_modify_return_test(1, &b) (b = 2: it adds 1 to b and
  // returns 1 + 3 = 4) and, on newer kernels, bpf_modify_return_test2 too; it reports
  // (functions whose body ran << 16) | the sum of their return values.
  const unmodified = prog.run().retval;
  t.ok(unmodified >> 16 >= 1, 'without the program the function bodies run');
  {
    using _l = autoAttach(prog, spec.programs.on_fmod_ret);
    const r = prog.run().retval;
    t.equal((r & 0xffff) - (unmodified & 0xffff), 1234 - 4, 'bpf_modify_return_test returned 1234 instead of 4');
    t.equal((unmodified >> 16) - (r >> 16), 1, 'and its body was skipped');
    t.equal(v(coll, 'fmod_ret_calls'), 1n);
  }
  t.equal(prog.run().retval, unmodified, 'detached: the function runs again');
  t.end();
});

t.test('freplace replaces a global function of an XDP program', { skip: trampolines }, (t) => {
  const before = fdCount();
  {
    using coll = new Collection(spec, {
      programs: ['xdp_with_verdict', 'new_verdict'],
      attachTargets: { new_verdict: { program: 'xdp_with_verdict' } },
    });
    const xdp = coll.programs.xdp_with_verdict;
    const ext = coll.programs.new_verdict;
    t.equal(xdp.run({ data: packet }).retval, XDP_PASS, 'the original xdp_verdict passes');
    {
      using link = autoAttachTracing(ext, spec.programs.new_verdict) as Link;
      t.equal(link.info().typeName, 'tracing', 'a tracing link');
      t.equal(link.kind, 'freplace');
      t.equal(xdp.run({ data: packet }).retval, XDP_DROP, 'replaced: drops');
    }
    t.equal(xdp.run({ data: packet }).retval, XDP_PASS, 'link closed: the original again');
    {
      using _l = attachFreplace(ext, { program: xdp, function: 'xdp_verdict' });
      t.equal(xdp.run({ data: packet }).retval, XDP_DROP, 'attached by target program and function (BPF_LINK_CREATE)');
    }
  }
  t.equal(fdCount(), before);
  t.end();
});

t.test('an LSM program denies socket(AF_UNIX, SOCK_SEQPACKET) to this process', { skip: lsm }, (t) => {
  const seqpacket = () => {
    const fd = rawSyscall(NR.socket, 1n, 5n, 0n);
    if (fd >= 0) rawSyscall(NR.close, BigInt(fd));
    return fd;
  };
  using coll = new Collection(spec, { programs: ['deny_seqpacket'] });
  t.ok(seqpacket() >= 0, 'allowed before');
  {
    using _l = autoAttach(coll.programs.deny_seqpacket, spec.programs.deny_seqpacket);
    t.equal(seqpacket(), -E.EPERM, 'denied with EPERM while attached');
  }
  t.ok(seqpacket() >= 0, 'allowed again after close');
  t.end();
});

t.test('freplace targets resolve in the target program\'s own BTF (no trampoline needed)', (t) => {
  using coll = new Collection(spec, { programs: ['xdp_with_verdict'] });
  const xdp = coll.programs.xdp_with_verdict;
  const btf = xdp.btf();
  const fn = btf.tryFindType('xdp_verdict', 'func');
  t.ok(fn, 'the kernel gives back the BTF the program was loaded with');
  t.equal(functionBtfId(xdp, 'xdp_verdict'), fn!.id);
  t.throws(() => functionBtfId(xdp, 'no_such_function'), /has no function "no_such_function"/);
  t.throws(() => new Collection(spec, { programs: ['new_verdict'] }), { name: 'CollectionError', message: /needs its target: pass \{ attachTargets/ });
  t.throws(() => new Collection(spec, { programs: ['new_verdict'], attachTargets: { new_verdict: { program: 'xdp_with_verdict' } } }),
    { name: 'CollectionError', message: /target program "xdp_with_verdict" is not loaded/ });
  t.end();
});

t.test('trampoline probes', (t) => {
  // Here for the record: what the probes found on this kernel.
  t.comment(`trampolines: ${trampolines || 'available'}; BPF LSM: ${lsm || 'available'}`);
  t.pass();
  t.end();
});
