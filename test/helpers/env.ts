// Shared test helpers: where the objects are, fd/RSS probes.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(here, '..', '..');
/** Objects under test: bpf/ by default, or TSBPF_BPF_DIR (CI points it at freshly rebuilt objects). */
export const BPF_DIR = process.env.TSBPF_BPF_DIR ?? join(ROOT, 'bpf');
export const obj = (name: string): string => join(BPF_DIR, name);

export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

export function rssKiB(): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

export function mappingCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').length;
}

/**
 * Environment for child processes that run our TypeScript through tap's loader: transpile only. The tap
 * processes type-check the same sources; a child that type-checks again spends 10+ s before doing anything.
 */
export const childEnv: NodeJS.ProcessEnv = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1' };

/** How long a child process may take: generous, since under qemu (TCG) node runs 10-25x slower. */
export const CHILD_TIMEOUT_MS = 600_000;
