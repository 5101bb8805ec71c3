// XDP attach through a bpf_link and through netlink, in skb and drv mode, with real packets: a namespace
// sends UDP over a veth pair to our end, where xdp_count counts and drops what goes to DROP_PORT.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { loadCollectionSpec, setVariable, Collection, TsbpfError } from '../src/index.js';
import { attachXdp, queryXdp } from '../src/links/xdp.js';
import { autoAttachNet, autoAttachNetSupport } from '../src/links/auto-net.js';
import { obj, fdCount, childEnv, CHILD_TIMEOUT_MS } from './helpers/env.js';
import { createNetEnv, sendUdp, udpReceiver, ip, type NetEnv } from './helpers/netns.js';
import { needsKernel } from './helpers/features.js';

const DROP_PORT = 7001;
const PASS_PORT = 7002;
const spec = loadCollectionSpec(obj('net_test.o'));
setVariable(spec, 'drop_port', DROP_PORT);
setVariable(spec, 'pass_port', PASS_PORT);

const v = (coll: Collection, name: string): number => Number(coll.variables[name].value);

/** Send n datagrams to each port from the namespace; how many arrived at each. */
async function traffic(env: NetEnv, n: number): Promise<{ dropPort: number; passPort: number }> {
  const rxDrop = await udpReceiver(undefined, env.hostAddr, DROP_PORT);
  const rxPass = await udpReceiver(undefined, env.hostAddr, PASS_PORT);
  sendUdp(env.ns, env.hostAddr, n, DROP_PORT, PASS_PORT);
  return { dropPort: await rxDrop.stop(), passPort: await rxPass.stop() };
}

const xdpShown = (env: NetEnv) => /\bxdp/.test(ip('link', 'show', 'dev', env.host));

for (const via of ['link', 'netlink'] as const) {
  for (const mode of ['skb', 'drv'] as const) {
    t.test(`via ${via}, ${mode} mode: counts, drops, detaches`, async (t) => {
      const env = createNetEnv(t);
      const fds = fdCount();
      {
        using coll = new Collection(spec, { programs: ['xdp_count'] });
        const prog = coll.programs.xdp_count;
        const link = attachXdp(prog, { iface: env.host, mode, via });
        t.equal(link.isBpfLink, via === 'link', via === 'link' ? 'a bpf_link' : 'a netlink attachment');
        t.equal(link.kind, 'xdp');
        t.equal(link.target, env.host);
        const st = queryXdp(env.host);
        t.equal(st.attached, mode);
        t.equal(st.progId, prog.info().id, 'the interface runs our program');
        t.ok(xdpShown(env), '`ip link` shows an XDP program');
        if (via === 'link') t.equal(link.info().details.ifindex, Number(ip('-j', 'link', 'show', 'dev', env.host).match(/"ifindex":(\d+)/)![1]));

        const got = await traffic(env, 5);
        t.equal(v(coll, 'xdp_dropped'), 5, 'saw the datagrams to the drop port');
        t.equal(v(coll, 'xdp_passed'), 5, 'saw the datagrams to the pass port');
        t.equal(got.dropPort, 0, 'dropped datagrams never arrived');
        t.equal(got.passPort, 5, 'passed datagrams arrived');

        link.close();
        link.close();
        t.equal(queryXdp(env.host).attached, 'none', 'nothing attached after close()');
        t.notOk(xdpShown(env), '`ip link` shows no XDP program');
        const total = v(coll, 'xdp_total');
        const again = await traffic(env, 3);
        t.equal(v(coll, 'xdp_total'), total, 'no counting after close()');
        t.same(again, { dropPort: 3, passPort: 3 }, 'everything arrives again');
      }
      t.equal(fdCount(), fds, 'no fd leaked');
    });
  }
}

t.test('default: a bpf_link, in the mode the kernel picks (drv on veth)', async (t) => {
  const env = createNetEnv(t);
  using coll = new Collection(spec, { programs: ['xdp_count'] });
  using link = attachXdp(coll.programs.xdp_count, { iface: env.host });
  t.ok(link.isBpfLink);
  t.equal(queryXdp(env.host).attached, 'drv');
  const got = await traffic(env, 2);
  t.same(got, { dropPort: 0, passPort: 2 });
});

t.test('by ifindex', async (t) => {
  const env = createNetEnv(t);
  using coll = new Collection(spec, { programs: ['xdp_count'] });
  const ifindex = Number(/^(\d+):/.exec(ip('link', 'show', 'dev', env.host))![1]);
  using link = attachXdp(coll.programs.xdp_count, { iface: ifindex, via: 'netlink', mode: 'skb' });
  t.equal(link.target, env.host, 'the target is named');
  t.equal(queryXdp(ifindex).attached, 'skb');
});

t.test('something already attached: the error says what and how to replace it', async (t) => {
  const env = createNetEnv(t);
  using coll = new Collection(spec, { programs: ['xdp_count', 'xdp_pass'] });
  const { xdp_count: a, xdp_pass: b } = coll.programs;

  {
    using first = attachXdp(a, { iface: env.host, mode: 'skb' });
    t.ok(first.isBpfLink);
    t.throws(() => attachXdp(b, { iface: env.host, mode: 'skb' }), { name: 'TsbpfError', message: /already runs XDP program "xdp_count" \(id \d+\) in skb mode, held by bpf_link id \d+.*link\.update\(\)/ });
    t.throws(() => attachXdp(b, { iface: env.host, mode: 'skb', via: 'netlink', replace: true }), { name: 'TsbpfError', message: /held by bpf_link/ }, 'netlink cannot replace a link');
    t.throws(() => attachXdp(b, { iface: env.host, mode: 'drv' }), { name: 'TsbpfError', message: /"xdp_count" \(id \d+\) in skb mode; native \(drv\) and generic \(skb\) XDP cannot be active at the same time/ }, 'the other mode is taken too (EEXIST)');
    t.throws(() => attachXdp(b, { iface: env.host, mode: 'drv', via: 'netlink' }), { name: 'TsbpfError', message: /cannot be active at the same time.*\(kernel: Native and generic XDP can't be active at the same time\)/ }, 'netlink adds the kernel\'s words');
    first.update(b);
    t.equal(queryXdp(env.host).progId, b.info().id, 'the owner swaps with update()');
  }
  t.equal(queryXdp(env.host).attached, 'none');

  const first = attachXdp(a, { iface: env.host, mode: 'skb', via: 'netlink' });
  t.teardown(() => first.close());
  t.throws(() => attachXdp(b, { iface: env.host, mode: 'skb', via: 'netlink' }), { name: 'TsbpfError', message: /"xdp_count" \(id \d+\) in skb mode, attached through netlink: pass \{ via: 'netlink', replace: true \}/ });
  t.throws(() => attachXdp(b, { iface: env.host, mode: 'skb' }), { name: 'TsbpfError', message: /attached through netlink/ }, 'a link cannot take over either');
  const second = attachXdp(b, { iface: env.host, mode: 'skb', replace: true });
  t.notOk(second.isBpfLink, 'replace falls back to netlink');
  t.equal(queryXdp(env.host).progId, b.info().id, 'replaced');
  first.close();
  t.equal(queryXdp(env.host).progId, b.info().id, "closing the replaced attachment leaves the replacement alone (IFLA_XDP_EXPECTED_FD)");
  await traffic(env, 1);
  t.ok(v(coll, 'xdp_other_total') >= 2, 'xdp_pass runs');
  second.close();
  t.equal(queryXdp(env.host).attached, 'none');
});

t.test('bad input is refused with an explanation', async (t) => {
  const env = createNetEnv(t);
  const fds = fdCount();
  {
    using coll = new Collection(spec, { programs: ['xdp_count', 'tc_count'] });
    const prog = coll.programs.xdp_count;
    t.throws(() => attachXdp(prog, { iface: 'tsbpf-nonesuch' }), { name: 'TsbpfError', message: /unknown interface "tsbpf-nonesuch".*ip link/ });
    t.throws(() => attachXdp(prog, { iface: 999999 }), { name: 'TsbpfError', message: /unknown interface 999999/ });
    t.throws(() => attachXdp(prog, { iface: '' }), { name: 'TsbpfError', message: /invalid interface/ });
    t.throws(() => attachXdp(coll.programs.tc_count, { iface: env.host }), { name: 'TsbpfError', message: /"tc_count".*sched_cls program; XDP needs one loaded from SEC\("xdp"\)/ });
    t.throws(() => attachXdp(prog, { iface: env.host, mode: 'fast' as never }), { name: 'TsbpfError', message: /unknown mode "fast"/ });
    t.throws(() => attachXdp(prog, { iface: env.host, via: 'ioctl' as never }), { name: 'TsbpfError', message: /unknown via "ioctl"/ });
    // The loopback device has no native XDP.
    for (const via of [undefined, 'link', 'netlink'] as const) {
      t.throws(() => attachXdp(prog, { iface: 'lo', mode: 'drv', via }), { name: 'TsbpfError', message: /driver of lo has no native XDP; use \{ mode: 'skb' \}/ }, `drv on lo via ${via ?? 'default'}`);
    }
    t.throws(() => attachXdp(prog, { iface: env.host, mode: 'hw', via: 'netlink' }), { name: 'TsbpfError', message: /cannot offload/ });
    t.equal(queryXdp('lo').attached, 'none');
    t.equal(queryXdp(env.host).attached, 'none');
  }
  t.equal(fdCount(), fds, 'failed attaches leak no fd');
});

t.test('auto-attach by section name', async (t) => {
  const env = createNetEnv(t);
  const xdp = spec.programs.xdp_count;
  t.equal(autoAttachNetSupport(xdp, {}), 'xdp needs --iface (an interface to attach to)');
  t.equal(autoAttachNetSupport(xdp, { iface: env.host }), undefined);
  t.equal(autoAttachNetSupport(spec.programs.xdp_frags, { iface: env.host }), undefined);
  t.equal(autoAttachNetSupport(spec.programs.tcx_in, {}), 'tcx/ingress needs --iface (an interface to attach to)');
  t.match(autoAttachNetSupport(spec.programs.tc_count, { iface: env.host }), /SEC\("tc"\) names no direction/);
  const tp = loadCollectionSpec(obj('links_test.o')).programs.prog_a;
  t.equal(autoAttachNetSupport(tp, { iface: env.host }), null, 'not a networking section');
  using coll = new Collection(spec, { programs: ['xdp_count', 'tcx_in'] });
  t.equal(autoAttachNet(coll.programs.xdp_count, tp, { iface: env.host }), undefined, 'not mine: undefined');
  t.throws(() => autoAttachNet(coll.programs.xdp_count, xdp, {}), TsbpfError);
  {
    using link = autoAttachNet(coll.programs.xdp_count, xdp, { iface: env.host })!;
    t.equal(link.kind, 'xdp');
    t.equal(queryXdp(env.host).progId, coll.programs.xdp_count.info().id);
  }
  {
    using link = autoAttachNet(coll.programs.tcx_in, spec.programs.tcx_in, { iface: env.host })!;
    // tcx from 6.6; before, the same section falls back to clsact + cls_bpf over netlink.
    t.equal(link.kind, needsKernel(6, 6, 'tcx') ? 'tc' : 'tcx');
    t.match(link.target, new RegExp(`^${env.host}:ingress`));
    await traffic(env, 1);
    t.ok(v(coll, 'tcx_in_total') >= 2, 'tcx/ingress program runs');
  }
  t.equal(queryXdp(env.host).attached, 'none');
});

t.test('netlink attachments are removed at process exit', async (t) => {
  const env = createNetEnv(t);
  const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a === '--enable-source-maps');
  const src = new URL('../src/', import.meta.url).href;
  const script = `
    const { loadCollectionSpec, Collection } = await import('${src}index.ts');
    const { attachXdp } = await import('${src}links/xdp.ts');
    const { attachTc } = await import('${src}links/tc.ts');
    const coll = new Collection(loadCollectionSpec(${JSON.stringify(obj('net_test.o'))}), { programs: ['xdp_count', 'tc_count'] });
    const x = attachXdp(coll.programs.xdp_count, { iface: '${env.host}', via: 'netlink', mode: 'skb' });
    const c = attachTc(coll.programs.tc_count, { iface: '${env.host}', direction: 'ingress', via: 'netlink' });
    process.stdout.write(String(x.isBpfLink) + ' ' + String(c.isBpfLink));
  `;
  const r = spawnSync(process.execPath, [...nodeArgs, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, env: childEnv });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'false false', 'the child attached through netlink');
  t.equal(queryXdp(env.host).attached, 'none', 'its XDP program was removed when it exited');
  t.notOk(xdpShown(env));
  t.notMatch(execFileSync('tc', ['qdisc', 'show', 'dev', env.host], { encoding: 'utf8' }), /clsact/, 'its filter and clsact qdisc too');
});
