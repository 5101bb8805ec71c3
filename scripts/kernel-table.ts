// Build the README's "which tests ran on which kernel" table from the TAP logs of the last CI run.
//
//   node --import=@tapjs/typescript/import scripts/kernel-table.ts LABEL=LOG [LABEL=LOG ...] [--readme README.md]
//
// Each LOG is tap's raw TAP output of one run (host or VM). Per test file and kernel the table shows the
// assertions passed, failed and skipped, or "—" when the file did not run there; below it every skip reason
// per kernel. With --readme the table replaces what is between the markers
// `<!-- kernel-table:start -->` and `<!-- kernel-table:end -->`; otherwise it goes to stdout.

import { readFileSync, writeFileSync } from 'node:fs';

interface FileResult {
  pass: number;
  fail: number;
  skip: number;
  /** skip reason → test names */
  reasons: Map<string, string[]>;
  ok: boolean;
}

/** Results per test file of one TAP log. */
export function parseTap(text: string): Map<string, FileResult> {
  const out = new Map<string, FileResult>();
  let current: FileResult | undefined;
  for (const line of text.split('\n')) {
    const sub = /^# Subtest: (test\/\S+)$/.exec(line);
    if (sub) {
      current = { pass: 0, fail: 0, skip: 0, reasons: new Map(), ok: false };
      out.set(sub[1]!, current);
      continue;
    }
    const top = /^(not )?ok \d+ - (test\/\S+)/.exec(line);
    if (top) {
      const r = out.get(top[2]!);
      if (r) r.ok = !top[1];
      current = undefined;
      continue;
    }
    if (!current) continue;
    // Leaf assertions and skipped subtests, at any depth (a subtest's own summary line has a time=).
    const m = /^\s+(not )?ok \d+ - (.*?)(?: # (SKIP|TODO)\s*(.*))?$/.exec(line);
    if (!m) continue;
    if (m[3] === 'SKIP') {
      current.skip++;
      const reason = (m[4] ?? '').trim() || '(no reason given)';
      const names = current.reasons.get(reason) ?? [];
      names.push(m[2]!.replace(/ # time=.*$/, ''));
      current.reasons.set(reason, names);
    } else if (/# time=/.test(line)) {
      continue;
    } else if (m[1]) {
      current.fail++;
    } else {
      current.pass++;
    }
  }
  return out;
}

export function renderTable(runs: { label: string; results: Map<string, FileResult> }[]): string {
  const files = [...new Set(runs.flatMap((r) => [...r.results.keys()]))].sort();
  const lines: string[] = [];
  lines.push(`| test file | ${runs.map((r) => r.label).join(' | ')} |`);
  lines.push(`|---|${runs.map(() => '---').join('|')}|`);
  for (const f of files) {
    const cells = runs.map((r) => {
      const x = r.results.get(f);
      if (!x) return '—';
      const parts = [`${x.pass} ✓`];
      if (x.fail) parts.push(`**${x.fail} ✗**`);
      if (x.skip) parts.push(`${x.skip} skipped`);
      return parts.join(', ');
    });
    lines.push(`| \`${f.replace(/^test\//, '')}\` | ${cells.join(' | ')} |`);
  }
  lines.push('');
  lines.push('Skipped, with the reasons the tests gave:');
  lines.push('');
  for (const r of runs) {
    const all = new Map<string, string[]>();
    for (const [f, x] of r.results) {
      for (const [full, names] of x.reasons) {
        // "libbpf cannot load it either: prog 'x': ..." and the like: one line per kind of reason.
        const reason = /^[^(]*?: /.test(full) ? full.slice(0, full.indexOf(': ')) : full;
        const list = all.get(reason) ?? [];
        list.push(...names.map((n) => `${f.replace(/^test\//, '').replace(/\.test\.ts$/, '')}: ${n}`));
        all.set(reason, list);
      }
    }
    if (all.size === 0) {
      lines.push(`- **${r.label}**: nothing skipped`);
      continue;
    }
    lines.push(`- **${r.label}**:`);
    for (const [reason, names] of [...all].sort((a, b) => b[1].length - a[1].length)) {
      const shown = names.slice(0, 4).join('; ') + (names.length > 4 ? `; and ${names.length - 4} more` : '');
      lines.push(`  - ${reason.replace(/\|/g, '\\|')} (${names.length}: ${shown.replace(/\|/g, '\\|')})`);
    }
  }
  return lines.join('\n');
}

function main(argv: string[]): void {
  let readme: string | undefined;
  const runs: { label: string; results: Map<string, FileResult> }[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--readme') {
      readme = argv[++i];
      continue;
    }
    const eq = argv[i]!.indexOf('=');
    if (eq <= 0) throw new Error(`want LABEL=LOG, got "${argv[i]}"`);
    runs.push({ label: argv[i]!.slice(0, eq), results: parseTap(readFileSync(argv[i]!.slice(eq + 1), 'utf8')) });
  }
  const table = renderTable(runs);
  if (!readme) {
    process.stdout.write(table + '\n');
    return;
  }
  const text = readFileSync(readme, 'utf8');
  const start = '<!-- kernel-table:start -->';
  const end = '<!-- kernel-table:end -->';
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${readme} has no ${start} … ${end} markers`);
  writeFileSync(readme, text.slice(0, a + start.length) + '\n' + table + '\n' + text.slice(b));
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) main(process.argv.slice(2));
