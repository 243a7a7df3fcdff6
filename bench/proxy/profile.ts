/**
 * Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self time per
 * function and per source file, as shares of the sampled time, so that a
 * sessions run shows where the proxy's CPU goes. Also runnable on its own:
 * `node dist/bench/proxy/profile.js FILE.cpuprofile [TOP]`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface SelfTime {
  readonly name: string;
  readonly us: number;
  /** Share of all sampled time, idle included. */
  readonly share: number;
  /** Share of the time not idle. */
  readonly busyShare: number;
}

export interface ProfileSummary {
  readonly totalUs: number;
  readonly idleUs: number;
  readonly functions: SelfTime[];
  readonly files: SelfTime[];
}

/** Shortens a frame's URL to what tells files apart: node:internal/…, dist/src/…, node_modules/pkg/…. */
function shortUrl(url: string): string {
  if (url === '') return '(native)';
  const m = /(?:node_modules\/)(.+)$/.exec(url) ?? /\/(dist\/.+)$/.exec(url);
  return m !== null ? (m[1] as string) : url.replace(/^file:\/\//, '');
}

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, CallFrame>();
  for (const n of p.nodes) byId.set(n.id, n.callFrame);
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    const f = byId.get(p.samples[i] as number);
    if (f === undefined) continue;
    total += dt;
    if (f.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    const where = shortUrl(f.url);
    const name = `${f.functionName || '(anonymous)'}${f.url === '' ? '' : ` ${where}:${f.lineNumber + 1}`}`;
    fn.set(name, (fn.get(name) ?? 0) + dt);
    const fileKey = f.url === '' ? f.functionName : where;
    files.set(fileKey, (files.get(fileKey) ?? 0) + dt);
  }
  const busy = total - idle;
  const rank = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, us, share: us / total, busyShare: busy > 0 ? us / busy : NaN }));
  return { totalUs: total, idleUs: idle, functions: rank(fn), files: rank(files) };
}

export function formatProfile(s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const table = (title: string, rows: readonly SelfTime[]) =>
    [`| ${title} | self ms | of busy time |`, '|---|---:|---:|', ...rows.map((r) => `| \`${r.name}\` | ${(r.us / 1000).toFixed(0)} | ${pct(r.busyShare)} |`)].join('\n');
  return [
    `Sampled ${(s.totalUs / 1e6).toFixed(1)} s, of which idle ${pct(s.idleUs / s.totalUs)}.`,
    '',
    table('Function (self time)', s.functions),
    '',
    table('File (self time)', s.files),
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [file, top] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: node dist/bench/proxy/profile.js FILE.cpuprofile [TOP]\n');
    process.exitCode = 2;
  } else process.stdout.write(`${formatProfile(summarizeProfile(file, top === undefined ? 25 : Number(top)))}\n`);
}
