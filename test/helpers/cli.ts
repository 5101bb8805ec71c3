// Starting the `tsbpf` CLI from source in a child, for the CLI tests: output collected as it comes.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, childEnv } from './env.js';

export const CLI = join(ROOT, 'src', 'cli', 'main.ts');
/** The TypeScript loader tap gave this process, for the children. */
export const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');

/** How long a child may take to print something expected (it compiles TypeScript first; a VM is slow). */
export const STARTUP_MS = 100_000;

export interface Cli {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code (-1 when killed by a signal). */
  exit: Promise<number>;
  /** Resolves once stdout (or stderr) matches; rejects if the process exits first, or after `ms`. */
  waitFor(re: RegExp | ((s: string) => boolean), where?: 'stdout' | 'stderr', ms?: number): Promise<void>;
  /** SIGINT (unless it already exited), then the exit code. */
  interrupt(): Promise<number>;
}

/**
 * Only the TypeScript loader: for children that run as another user, who may not write tap's process
 * records into .tap/ (tap's own --import hooks would fail at exit).
 */
export const tsOnlyArgs = nodeArgs.filter((a) => a.includes('@tapjs/typescript'));

/** Start `tsbpf ARGS`, optionally under a wrapper command (e.g. setpriv), with node given `execArgs`. */
export function startCli(args: string[], wrapper: string[] = [], execArgs = nodeArgs): Cli {
  const argv = [...wrapper, process.execPath, ...execArgs, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  const out = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  let exited = false;
  const notify = (): void => {
    for (const l of [...listeners]) l();
  };
  child.stdout!.on('data', (d) => {
    out.stdout += d;
    notify();
  });
  child.stderr!.on('data', (d) => {
    out.stderr += d;
    notify();
  });
  const exit = new Promise<number>((resolve) => child.on('exit', (code) => {
    exited = true;
    notify();
    resolve(code ?? -1);
  }));
  const tail = (): string => `\nstdout: ${out.stdout.slice(-2000)}\nstderr: ${out.stderr.slice(-2000)}`;
  return {
    child,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    exit,
    waitFor(re, where = 'stdout', ms = STARTUP_MS) {
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (typeof re === 'function' ? re(out[where]) : re.test(out[where])) done();
          else if (exited) done(new Error(`exited before ${re} matched${tail()}`));
        };
        const timer = setTimeout(() => done(new Error(`${re} did not match in ${ms} ms${tail()}`)), ms);
        const done = (err?: Error): void => {
          clearTimeout(timer);
          listeners.delete(check);
          if (err) reject(err);
          else resolve();
        };
        listeners.add(check);
        check();
      });
    },
    interrupt() {
      if (!exited) child.kill('SIGINT');
      return exit;
    },
  };
}

/** Scheduler load (busy loops and short-lived children) until the returned function is called. */
export function makeLoad(busy = 2): () => void {
  const kids: ChildProcess[] = [];
  // Each busy loop ends by itself after two minutes: a test file that tap kills on its timeout runs no
  // teardown, and loops left spinning would starve every test file after it.
  for (let i = 0; i < busy; i++) kids.push(spawn('timeout', ['-s', 'KILL', '120', '/bin/sh', '-c', 'while :; do :; done'], { stdio: 'ignore' }));
  let stopped = false;
  const churn = (): void => {
    if (stopped) return;
    const c = spawn('/bin/sh', ['-c', 'sleep 0.01; sleep 0.01'], { stdio: 'ignore' });
    c.on('exit', () => setTimeout(churn, 5));
  };
  for (let i = 0; i < 3; i++) churn();
  return () => {
    stopped = true;
    // TERM, not KILL: `timeout` passes TERM on to the loop, while a KILL would orphan the loop.
    for (const k of kids) k.kill('SIGTERM');
  };
}
