// TC attach through tcx links and through netlink (clsact + cls_bpf direct-action), ingress and egress,
// with real packets over a veth pair: tc_count on our end counts and drops UDP to DROP_PORT.
import t from 'tap';
import { loadCollectionSpec, setVariable, Collection } from '../src/index.js';
import { BPF_ATTACH_TYPE, progQuery, ifNameToIndex } from '../src/syscall/index.js';
import { attachTc, listTcFilters, type TcDirection } from '../src/links/tc.js';
import { obj, fdCount } from './helpers/env.js';
import { createNetEnv, sendUdp, udpReceiver, tc, type NetEnv } from './helpers/netns.js';
import { needsKernel } from './helpers/features.js';

const DROP_PORT = 7101;
const PASS_PORT = 7102;
const spec = loadCollectionSpec(obj('net_test.o'));
setVariable(spec, 'drop_port', DROP_PORT);
setVariable(spec, 'pass_port', PASS_PORT);

const v = (coll: Collection, name: string): number => Number(coll.variables[name].value);

/**
 * Ingress: the namespace sends to us. Egress: we send to the namespace. n datagrams to each port; how
 * many arrived at each.
 */
async function traffic(env: NetEnv, direction: TcDirection, n: number): Promise<{ dropPort: number; passPort: number }> {
  const [rxNs, rxAddr, txNs, dst] = direction === 'ingress' ? [undefined, env.hostAddr, env.ns, env.hostAddr] : [env.ns, env.nsAddr, undefined, env.nsAddr];
  const rxDrop = await udpReceiver(rxNs, rxAddr, DROP_PORT);
  const rxPass = await udpReceiver(rxNs, rxAddr, PASS_PORT);
  sendUdp(txNs, dst, n, DROP_PORT, PASS_PORT);
  return { dropPort: await rxDrop.stop(), passPort: await rxPass.stop() };
}

const tcxIds = (env: NetEnv, direction: TcDirection) =>
  progQuery(ifNameToIndex(env.host), direction === 'ingress' ? BPF_ATTACH_TYPE.TCX_INGRESS : BPF_ATTACH_TYPE.TCX_EGRESS).ids;
const qdiscs = (env: NetEnv) => tc('qdisc', 'show', 'dev', env.host);
const filters = (env: NetEnv, direction: TcDirection) => tc('filter', 'show', 'dev', env.host, direction);
const bpfNames = (env: NetEnv) => listTcFilters(env.host, 'ingress').filter((f) => f.kind === 'bpf').map((f) => f.name).sort();
/** Someone else's filter: u32 (built into most kernels, unlike matchall). */
const foreignFilter = (env: NetEnv) => tc('filter', 'add', 'dev', env.host, 'ingress', 'prio', '100', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'classid', '1:1');

for (const via of ['tcx', 'netlink'] as const) {
  for (const direction of ['ingress', 'egress'] as const) {
    t.test(`via ${via}, ${direction}: counts, drops, detaches`, { skip: via === 'tcx' && needsKernel(6, 6, 'tcx links') }, async (t) => {
      const env = createNetEnv(t);
      const fds = fdCount();
      {
        using coll = new Collection(spec, { programs: ['tc_count'] });
        const prog = coll.programs.tc_count;
        const id = prog.info().id;
        const link = attachTc(prog, { iface: env.host, direction, via });
        t.equal(link.isBpfLink, via === 'tcx');
        t.equal(link.kind, via === 'tcx' ? 'tcx' : 'tc');
        if (via === 'tcx') {
          t.same(tcxIds(env, direction), [id], 'tcx runs our program');
          t.equal(link.info().typeName, 'tcx');
          t.notMatch(qdiscs(env), /clsact/, 'tcx needs no qdisc');
        } else {
          t.match(qdiscs(env), /clsact/, 'clsact created');
          t.match(filters(env, direction), /bpf .*tc_count.*direct-action/, '`tc filter show` shows our direct-action filter');
          t.match(listTcFilters(env.host, direction), [{ kind: 'bpf', progId: id, name: 'tc_count' }]);
        }

        const got = await traffic(env, direction, 5);
        t.equal(v(coll, 'tc_dropped'), 5, 'saw the datagrams to the drop port');
        t.equal(v(coll, 'tc_passed'), 5, 'saw the datagrams to the pass port');
        t.same(got, { dropPort: 0, passPort: 5 }, 'dropped datagrams never arrived, passed ones did');

        link.close();
        link.close();
        if (via === 'tcx') t.same(tcxIds(env, direction), [], 'nothing attached after close()');
        else {
          t.equal(filters(env, direction).trim(), '', 'our filter is gone');
          t.notMatch(qdiscs(env), /clsact/, 'the clsact qdisc we created is gone');
        }
        const total = v(coll, 'tc_total');
        t.same(await traffic(env, direction, 3), { dropPort: 3, passPort: 3 }, 'everything arrives again');
        t.equal(v(coll, 'tc_total'), total, 'no counting after close()');
      }
      t.equal(fdCount(), fds, 'no fd leaked');
    });
  }
}

t.test('netlink: close() removes only its own filter, and a clsact it did not create stays', async (t) => {
  const env = createNetEnv(t);
  using coll = new Collection(spec, { programs: ['tc_count', 'tc_pass'] });
  tc('qdisc', 'add', 'dev', env.host, 'clsact');
  foreignFilter(env);

  const a = attachTc(coll.programs.tc_count, { iface: env.host, direction: 'ingress', priority: 10 });
  t.notOk(a.isBpfLink, 'a priority means netlink');
  t.match(a.target, new RegExp(`^${env.host}:ingress prio 10 handle 0x1$`));
  const b = attachTc(coll.programs.tc_pass, { iface: env.host, direction: 'ingress', priority: 1 }); // first: it passes on
  t.same(bpfNames(env), ['tc_count', 'tc_pass']);

  const got = await traffic(env, 'ingress', 2);
  t.same(got, { dropPort: 0, passPort: 2 });
  t.ok(v(coll, 'tc_other_total') >= 2, 'the second filter runs too');

  a.close();
  t.same(bpfNames(env), ['tc_pass'], 'only tc_count was removed');
  t.match(filters(env, 'ingress'), /u32/, 'the foreign filter stays');
  b.close();
  t.same(bpfNames(env), []);
  t.match(filters(env, 'ingress'), /u32/, 'the foreign filter stays');
  t.match(qdiscs(env), /clsact/, 'the clsact qdisc we did not create stays');

  // A clsact we create stays while someone else's filter uses it.
  tc('qdisc', 'del', 'dev', env.host, 'clsact');
  const c = attachTc(coll.programs.tc_count, { iface: env.host, direction: 'egress', via: 'netlink' });
  foreignFilter(env);
  c.close();
  t.equal(filters(env, 'egress').trim(), '');
  t.match(qdiscs(env), /clsact/, 'a qdisc with filters left is kept');
});

t.test('netlink: priority/handle conflicts and replace', async (t) => {
  const env = createNetEnv(t);
  using coll = new Collection(spec, { programs: ['tc_count', 'tc_pass'] });
  const { tc_count: a, tc_pass: b } = coll.programs;
  using first = attachTc(a, { iface: env.host, direction: 'ingress', priority: 5, handle: 7 });
  t.throws(() => attachTc(b, { iface: env.host, direction: 'ingress', priority: 5, handle: 7 }), {
    name: 'TsbpfError',
    message: /already has bpf filter priority 5 handle 0x7 running "tc_count" \(id \d+\); choose another priority\/handle or pass replace: true/,
  });
  const second = attachTc(b, { iface: env.host, direction: 'ingress', priority: 5, handle: 7, replace: true });
  t.match(listTcFilters(env.host, 'ingress'), [{ priority: 5, handle: 7, progId: b.info().id }], 'replaced');
  first.close();
  t.match(listTcFilters(env.host, 'ingress'), [{ priority: 5, handle: 7, progId: b.info().id }], 'closing the replaced one leaves the replacement');
  second.close();
  t.same(listTcFilters(env.host, 'ingress'), []);
  t.notMatch(qdiscs(env), /clsact/);
});

t.test('tcx: order with before/after; one program once per hook', { skip: needsKernel(6, 6, 'tcx links') }, async (t) => {
  const env = createNetEnv(t);
  using coll = new Collection(spec, { programs: ['tc_count', 'tc_pass', 'tcx_in'] });
  const { tc_count: a, tc_pass: b, tcx_in: c } = coll.programs;
  using la = attachTc(a, { iface: env.host, direction: 'ingress' });
  using lb = attachTc(b, { iface: env.host, direction: 'ingress', before: la });
  using lc = attachTc(c, { iface: env.host, direction: 'ingress', after: b });
  t.same(tcxIds(env, 'ingress'), [b.info().id, c.info().id, a.info().id], 'before a link, after a program');
  t.ok(lb.isBpfLink && lc.isBpfLink);
  t.throws(() => attachTc(a, { iface: env.host, direction: 'ingress' }), { name: 'TsbpfError', message: /"tc_count" already runs at .*:ingress/ });
  t.throws(() => attachTc(a, { iface: env.host, direction: 'egress', before: b }), { name: 'TsbpfError', message: /program given as before is not attached at .*:egress/ });
});

t.test('bad input is refused with an explanation', async (t) => {
  const env = createNetEnv(t);
  const fds = fdCount();
  {
    using coll = new Collection(spec, { programs: ['tc_count', 'xdp_count'] });
    const prog = coll.programs.tc_count;
    const iface = env.host;
    t.throws(() => attachTc(prog, { iface: 'tsbpf-nonesuch', direction: 'ingress' }), { name: 'TsbpfError', message: /unknown interface "tsbpf-nonesuch"/ });
    t.throws(() => attachTc(coll.programs.xdp_count, { iface, direction: 'ingress' }), { name: 'TsbpfError', message: /"xdp_count".*xdp program; tc needs one loaded from SEC\("tc"\)/ });
    t.throws(() => attachTc(prog, { iface, direction: 'sideways' as never }), { name: 'TsbpfError', message: /direction must be 'ingress' or 'egress'/ });
    t.throws(() => attachTc(prog, { iface, direction: 'ingress', via: 'tcx', priority: 3 }), { name: 'TsbpfError', message: /priority, handle and replace belong to netlink/ });
    t.throws(() => attachTc(prog, { iface, direction: 'ingress', via: 'netlink', before: prog }), { name: 'TsbpfError', message: /before\/after order tcx programs/ });
    t.throws(() => attachTc(prog, { iface, direction: 'ingress', priority: 70000 }), { name: 'TsbpfError', message: /priority must be an integer in 1\.\.65535/ });
    t.notMatch(qdiscs(env), /clsact/, 'nothing left behind');
  }
  t.equal(fdCount(), fds, 'failed attaches leak no fd');
});
