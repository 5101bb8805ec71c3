// Issue 9, acceptance 4: no public API call can make the process die from a signal. The nastiest cases
// run in a child (test/helpers/nasty-child.ts), which must exit 0 with every case reported, each either
// working or refused with a tsbpf error (or a TypeError for a value of the wrong JS type).
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, childEnv, CHILD_TIMEOUT_MS } from './helpers/env.js';
import { nodeArgs } from './helpers/cli.js';

t.setTimeout(CHILD_TIMEOUT_MS + 30_000);

t.test('the nastiest cases end in errors, never in a signal', async (t) => {
  const child = spawn(process.execPath, ['--expose-gc', ...nodeArgs, join(ROOT, 'test', 'helpers', 'nasty-child.ts')], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: CHILD_TIMEOUT_MS,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('exit', (c, s) => r([c, s])));
  const cases = stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { case: string; outcome: string; error?: string });
  t.equal(signal, null, `no signal (last case reported: ${cases.at(-1)?.case})\n${stderr}`);
  t.equal(code, 0, `exit code 0\n${stderr}`);
  t.ok(cases.length >= 12, `${cases.length} cases reported`);
  t.equal(cases.at(-1)?.case, 'end', 'ran to the end, with objects left open');
  for (const c of cases) t.not(c.outcome, 'foreign', `${c.case}: ${c.outcome}${c.error ? ` (${c.error.split('\n')[0]})` : ''}`);
  // Cases that must be refused (they touch closed objects last).
  const refused = (name: RegExp, error: RegExp): void => {
    const c = cases.find((x) => name.test(x.case));
    t.equal(c?.outcome, 'refused', `${c?.case}: refused`);
    t.match(c?.error ?? '', error);
  };
  refused(/^user ring buffer/, /^ClosedError: /);
  refused(/^globals after/, /^ClosedError: /);
  refused(/^a map closed in the middle/, /^ClosedError: /);
  refused(/^test runs/, /^ClosedError: /);
  refused(/^a link closed twice/, /^ClosedError: /);
  refused(/^a reader closed inside/, /^ClosedError: /);
  refused(/^keys from odd memory/, /key is 0 bytes/);
  for (const name of [/^ring buffer views/, /^perf views/, /^map and program handles/, /^tsbpf used only from a worker/]) {
    t.equal(cases.find((x) => name.test(x.case))?.outcome, 'ok', `${name}: ok`);
  }
});
