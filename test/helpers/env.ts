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
