// Starting the `tsbpf` CLI from source in a child, for the CLI tests: output collected as it comes.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, childEnv } from './env.js';

export const CLI = join(ROOT, 'src', 'cli', 'main.ts');
/** The TypeScript loader tap gave this process, for the children. */
export const nodeArgs = process.execArgv.filter((a) => a.startsWith('--import') || a.startsWith('--loader') || a === '--enable-source-maps');

export interface Cli {
  child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code (-1 when killed by a signal). */
  exit: Promise<number>;
}

/** Start `tsbpf ARGS`, optionally under a wrapper command (e.g. setpriv). */
export function startCli(args: string[], wrapper: string[] = []): Cli {
  const argv = [...wrapper, process.execPath, ...nodeArgs, CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d) => (out.stdout += d));
  child.stderr!.on('data', (d) => (out.stderr += d));
  const exit = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
  return {
    child,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    exit,
  };
}

/** Scheduler load (busy loops and short-lived children) until the returned function is called. */
export function makeLoad(busy = 2): () => void {
  const kids: ChildProcess[] = [];
  for (let i = 0; i < busy; i++) kids.push(spawn('/bin/sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' }));
  let stopped = false;
  const churn = (): void => {
    if (stopped) return;
    const c = spawn('/bin/sh', ['-c', 'sleep 0.01; sleep 0.01'], { stdio: 'ignore' });
    c.on('exit', () => setTimeout(churn, 5));
  };
  for (let i = 0; i < 3; i++) churn();
  return () => {
    stopped = true;
    for (const k of kids) k.kill('SIGKILL');
  };
}
