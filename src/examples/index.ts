// The example programs `tsbpf run NAME` knows. Each is a module of its own, using the public API only
// (imports from '../index.js'), loaded when asked for.

export interface Example {
  /** One line for `tsbpf run --help`. */
  summary: string;
  load(): Promise<{ main(argv: string[]): Promise<number> }>;
}

export const EXAMPLES: Record<string, Example> = {
  runqslower: {
    summary: 'print each task that waited on a CPU run queue longer than a threshold (like bcc runqslower)',
    load: () => import('./runqslower.js'),
  },
};
