// The native fixture of the uprobe/USDT tests (test/fixtures/uprobe_target.c): compiled at test time,
// driven over stdin one command a line, each answered by one line.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from './env.js';

export const FIXTURE_SRC = join(ROOT, 'test', 'fixtures', 'uprobe_target.c');

/** The C compilers to try, in order (gcc puts USDT arguments in registers at -O0, clang on the stack). */
export function compilers(): string[] {
  return ['cc', 'clang-19'].filter((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
}

/** Compile the fixture with `cc` into a fresh temp dir; returns the binary path and a cleanup. */
export function buildTarget(cc: string): { path: string; dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tsbpf-uprobe-'));
  const path = join(dir, `uprobe_target_${cc.replace(/\W/g, '_')}`);
  const r = spawnSync(cc, ['-O0', '-g0', '-o', path, FIXTURE_SRC], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cc} failed to build the fixture: ${r.stderr}`);
  return { path, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A running fixture process. */
export class Target {
  readonly child: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  readonly #waiters: ((l: string) => void)[] = [];

  constructor(path: string) {
    this.child = spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const rl = createInterface({ input: this.child.stdout });
    rl.on('line', (l) => {
      const w = this.#waiters.shift();
      if (w) w(l);
      else this.#lines.push(l);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Send one command, wait for its answer line ("ok ..."), return what follows "ok". */
  async send(cmd: string): Promise<string> {
    const answer = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fixture did not answer "${cmd}"`)), 10_000);
      const done = (l: string): void => {
        clearTimeout(timer);
        resolve(l);
      };
      const queued = this.#lines.shift();
      if (queued !== undefined) done(queued);
      else this.#waiters.push(done);
    });
    this.child.stdin.write(`${cmd}\n`);
    const l = await answer;
    if (!l.startsWith('ok')) throw new Error(`fixture answered "${l}" to "${cmd}"`);
    return l.slice(2).trim();
  }

  async quit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end('quit\n');
    await exited;
  }
}
