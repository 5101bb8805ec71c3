// Run-time statistics of BPF programs (run count and time, bpf_prog_info run_cnt/run_time_ns): the kernel
// collects them while at least one BPF_ENABLE_STATS fd is open (5.8+) or while the sysctl
// kernel.bpf_stats_enabled is 1. Collecting costs a little on every program run.

import { readFileSync } from 'node:fs';
import { BPF_STATS_TYPE, enableStats as enableStatsFd, type FD } from '../syscall/index.js';

/** An open BPF_ENABLE_STATS request: statistics are collected until it is closed (or disposed). */
export interface StatsHandle extends Disposable {
  close(): void;
  readonly closed: boolean;
}

/**
 * Turn on run-time statistics for every program until the returned handle is closed:
 * `using _ = enableStats(); ...; program.stats()`.
 */
export function enableStats(): StatsHandle {
  const fd: FD = enableStatsFd(BPF_STATS_TYPE.RUN_TIME, 'enable BPF run-time statistics');
  return {
    close: () => fd.close(),
    get closed() {
      return fd.closed;
    },
    [Symbol.dispose]: () => fd.close(),
  };
}

/** Whether statistics are on system-wide through the sysctl (then enableStats() changes nothing). */
export function statsEnabledBySysctl(): boolean {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}
