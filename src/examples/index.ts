// The example programs `tsbpf run NAME` knows. Each is a module of its own, using the public API only
// (imports from '../index.js'), loaded when asked for.

export interface Example {
  /** One line for `tsbpf run --help`. */
  summary: string;
  load(): Promise<{ main(argv: string[]): Promise<number> }>;
}

export const EXAMPLES: Record<string, Example> = {
  runqlat: {
    summary: 'summarize run queue latency as log2 histograms, per process/thread/pid namespace (like bcc runqlat)',
    load: () => import('./runqlat.js'),
  },
  runqslower: {
    summary: 'print each task that waited on a CPU run queue longer than a threshold (like bcc runqslower)',
    load: () => import('./runqslower.js'),
  },
  'percpu-loop': {
    summary: 'a per-CPU map and bpf_loop(), test-run on each CPU; prints the per-CPU counters and their sums',
    load: () => import('./percpu-loop.js'),
  },
  'ringbuf-vs-perf': {
    summary: 'the same events through a ring buffer and a perf buffer: counts, losses and latency side by side',
    load: () => import('./ringbuf-vs-perf.js'),
  },
};
