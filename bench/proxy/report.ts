/**
 * The proxy suite's markdown: one table with the backend measured directly,
 * Doorman, the bare Node relay and HAProxy side by side (Doorman / HAProxy
 * and Doorman / relay ratios: above 1 is better for rates, below 1 for
 * latency, CPU and memory), and the pass/miss of the aims, each with
 * what the bare relay reached in the same run. Repeated runs are summarized by their median.
 */
import { fmt, formatAims, type Aim } from '../anvil/report.js';
import type { CpuReading, MeasuredLoop, MeasuredTransfer, OpenMemory, TargetName } from './measure.js';

export { formatAims };

export interface TargetResults {
  readonly name: TargetName;
  /** Right after start, settled; null for direct. */
  idleRssBytes: number | null;
  /** After all the load runs, settled; null for direct. */
  rssAfterLoadBytes: number | null;
  readonly sessions: MeasuredLoop[];
  readonly refusals: MeasuredLoop[];
  readonly down: MeasuredTransfer[];
  readonly up: MeasuredTransfer[];
  open: OpenMemory | null;
}

export type Results = Partial<Record<TargetName, TargetResults>>;

export function median(xs: readonly number[]): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2;
}

const MiB = 2 ** 20;
const ORDER: readonly TargetName[] = ['direct', 'doorman', 'relay', 'haproxy'];

/** One figure for a target: NaN where it does not apply. */
type Pick = (r: TargetResults) => number;

export function buildTable(res: Results, clients: number, openWanted: number, pinned = true): string {
  const rows: string[] = [];
  // Unpinned, every process may run on either core.
  const proxyCpu = pinned ? 'proxy CPU (CPU 1, share of one core)' : 'proxy CPU (share of one core)';
  const genCpu = pinned ? 'generator + backend CPU (CPU 0)' : 'generator + backend CPU (share of one core)';
  const cell = (r: TargetResults | undefined, f: Pick, digits: number, unit: string) => {
    if (r === undefined) return 'n/a';
    const v = f(r);
    return Number.isFinite(v) ? `${fmt(v, digits)}${unit}` : 'n/a';
  };
  const ratio = (f: Pick, over: TargetName) => {
    const d = res.doorman;
    const h = res[over];
    if (d === undefined || h === undefined) return 'n/a';
    const a = f(d);
    const b = f(h);
    return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${fmt(a / b, 2)}x` : 'n/a';
  };
  const add = (label: string, f: Pick, digits = 0, unit = '', withRatio = false) => {
    const cells = ORDER.map((n) => cell(res[n], f, digits, unit));
    const r = withRatio ? `${ratio(f, 'haproxy')} | ${ratio(f, 'relay')}` : ' | ';
    rows.push(`| ${label} | ${cells.join(' | ')} | ${r} |`);
  };
  const text = (label: string, f: (r: TargetResults) => string) =>
    rows.push(`| ${label} | ${ORDER.map((n) => (res[n] === undefined ? 'n/a' : f(res[n] as TargetResults))).join(' | ')} | | |`);
  const runs = (xs: readonly number[], digits = 0) => (xs.length === 0 ? 'n/a' : xs.map((x) => fmt(x, digits)).join(' / '));
  const cpu = (list: (r: TargetResults) => readonly MeasuredLoop[], g: (m: MeasuredLoop) => number) => (r: TargetResults) =>
    median(list(r).map(g));

  const S = (r: TargetResults) => r.sessions;
  const s = `Sessions, ${clients} clients`;
  add(`${s}: sessions/s (median)`, cpu(S, (m) => m.perSec), 0, '', true);
  text(`${s}: sessions/s, each run`, (r) => runs(r.sessions.map((m) => m.perSec)));
  add(`${s}: p50 session latency`, cpu(S, (m) => m.latency.p50Us), 0, ' µs', true);
  add(`${s}: p99 session latency`, cpu(S, (m) => m.latency.p99Us), 0, ' µs', true);
  add(`${s}: proxy CPU per session`, cpu(S, (m) => m.proxyCpuUsPerOp), 1, ' µs', true);
  add(`${s}: ${proxyCpu}`, cpu(S, (m) => m.cpu.proxyShare * 100), 0, '%');
  add(`${s}: ${genCpu}`, cpu(S, (m) => cpu0(m) * 100), 0, '%');
  add(`${s}: other processes' CPU (noise)`, cpu(S, (m) => m.cpu.otherShare * 100), 0, '%');
  add(`${s}: errors + stalls, all runs`, (r) => sum(r.sessions.map((m) => m.errors + m.stalled)));

  const R = (r: TargetResults) => r.refusals;
  const f = `421 refusals, ${clients} clients`;
  add(`${f}: refusals/s (median)`, cpu(R, (m) => m.perSec), 0, '', true);
  text(`${f}: refusals/s, each run`, (r) => runs(r.refusals.map((m) => m.perSec)));
  add(`${f}: p50 latency (connect to close)`, cpu(R, (m) => m.latency.p50Us), 0, ' µs', true);
  add(`${f}: p99 latency`, cpu(R, (m) => m.latency.p99Us), 0, ' µs', true);
  add(`${f}: proxy CPU per refusal`, cpu(R, (m) => m.proxyCpuUsPerOp), 1, ' µs', true);
  add(`${f}: ${proxyCpu}`, cpu(R, (m) => m.cpu.proxyShare * 100), 0, '%');
  add(`${f}: ${genCpu}`, cpu(R, (m) => cpu0(m) * 100), 0, '%');
  add(`${f}: errors + stalls, all runs`, (r) => (r.refusals.length === 0 ? NaN : sum(r.refusals.map((m) => m.errors + m.stalled))));

  for (const [dir, label] of [
    ['down', 'backend → client'],
    ['up', 'client → backend'],
  ] as const) {
    const T = (r: TargetResults) => r[dir];
    const some = ORDER.some((n) => (res[n]?.[dir].length ?? 0) > 0);
    if (!some) continue;
    const b = `Bulk ${label}, 1 connection`;
    add(`${b}: MiB/s (median)`, (r) => median(T(r).map((t) => t.bytesPerSec / MiB)), 0, '', true);
    text(`${b}: MiB/s, each transfer`, (r) => runs(T(r).map((t) => t.bytesPerSec / MiB)));
    add(`${b}: proxy CPU per GiB`, (r) => median(T(r).map((t) => t.proxyCpuMsPerGiB)), 0, ' ms', true);
    add(`${b}: ${proxyCpu}`, (r) => median(T(r).map((t) => t.cpu.proxyShare * 100)), 0, '%');
    add(`${b}: ${genCpu}`, (r) => median(T(r).map((t) => cpu0(t) * 100)), 0, '%');
  }

  const m = 'Memory';
  add(`${m}: proxy RSS idle, after start`, (r) => (r.idleRssBytes ?? NaN) / MiB, 1, ' MiB', true);
  add(`${m}: proxy RSS with ${fmt(openWanted, 0)} idle connections open`, (r) => (r.open?.rssOpenBytes ?? NaN) / MiB, 1, ' MiB', true);
  add(`${m}: connections opened (each read the banner)`, (r) => r.open?.opened ?? NaN);
  add(`${m}: RSS per open connection`, (r) => r.open?.bytesPerConnection ?? NaN, 0, ' B', true);
  add(`${m}: proxy RSS after they closed`, (r) => (r.open?.rssAfterCloseBytes ?? NaN) / MiB, 1, ' MiB', true);
  add(`${m}: proxy RSS after all the load runs`, (r) => (r.rssAfterLoadBytes ?? NaN) / MiB, 1, ' MiB', true);

  return ['| Figure | Backend direct | Doorman | Node relay | HAProxy | Doorman / HAProxy | Doorman / Node relay |', '|---|---:|---:|---:|---:|---:|---:|', ...rows].join('\n');
}

/** CPU 0's load: the generator and the backend share it. */
function cpu0(m: { readonly cpu: CpuReading }): number {
  return m.cpu.generatorShare + m.cpu.backendShare;
}

/** A core this busy is the limit of a run. */
const SATURATED = 0.9;

/**
 * Which side capped each proxy's rate: its own core, or CPU 0 (generator and
 * backend). Where it was CPU 0, the rate understates the proxy's headroom and
 * its CPU per operation is the fairer comparison.
 */
export function bottlenecks(res: Results, pinned = true): string[] {
  const out: string[] = [];
  if (!pinned) out.push('Nothing pinned: proxy, generator and backend share both cores, so which of them capped a run cannot be told apart; CPU per operation is the comparison to read.');
  const name = (n: TargetName) => ({ doorman: 'Doorman', relay: 'the Node relay', haproxy: 'HAProxy', direct: 'direct' })[n];
  const kinds = [
    ['sessions', (r: TargetResults) => r.sessions],
    ['refusals', (r: TargetResults) => r.refusals],
    ['bulk backend → client', (r: TargetResults) => r.down],
    ['bulk client → backend', (r: TargetResults) => r.up],
  ] as const;
  for (const [kind, list] of kinds) {
    if (!pinned) break;
    const parts: string[] = [];
    for (const n of ['doorman', 'relay', 'haproxy'] as const) {
      const r = res[n];
      if (r === undefined || list(r).length === 0) continue;
      const runs: ReadonlyArray<{ readonly cpu: CpuReading }> = list(r);
      const p = median(runs.map((m) => m.cpu.proxyShare));
      const g = median(runs.map((m) => cpu0(m)));
      const by = p >= SATURATED ? 'its own core' : g >= SATURATED ? 'CPU 0 (generator + backend)' : 'neither core (latency-bound)';
      parts.push(`${name(n)} at ${(p * 100).toFixed(0)}% of CPU 1 with CPU 0 at ${(g * 100).toFixed(0)}%: capped by ${by}`);
    }
    if (parts.length > 0) out.push(`Bottleneck, ${kind}: ${parts.join('; ')}.`);
  }
  const d = res.direct;
  if (d !== undefined && d.down.length > 0) {
    out.push(`Bulk: the backend alone reaches ${fmt(median(d.down.map((t) => t.bytesPerSec / MiB)), 0)} MiB/s backend → client${pinned ? ' on CPU 0' : ''}; a proxied rate near that is capped by the endpoints, and proxy CPU per GiB tells the proxies apart.`);
  }
  return out;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

/**
 * The aims, Doorman / HAProxy; each says what the bare Node relay
 * reached in the same run (the issue quotes 0.86x, 0.81x and 1.4x from
 * shared/notes/haproxy-2.6.md).
 */
export function evaluateAims(res: Results): Aim[] {
  const d = res.doorman;
  const h = res.haproxy;
  const n = res.relay;
  if (d === undefined || h === undefined) return [{ aim: 'Doorman / HAProxy ratios', observed: 'not measured: needs both proxies in the same run', pass: null }];
  const aims: Aim[] = [];
  const ratioAim = (aim: string, pick: (r: TargetResults) => number, unit: string, digits: number, pass: (r: number) => boolean) => {
    const a = pick(d);
    const b = pick(h);
    const r = a / b;
    const ok = Number.isFinite(r);
    const relay = n === undefined ? NaN : pick(n) / b;
    const also = Number.isFinite(relay) ? `; the Node relay ${fmt(relay, 2)}x` : '';
    aims.push({ aim, observed: ok ? `${fmt(r, 2)}x (${fmt(a, digits)} vs ${fmt(b, digits)}${unit}${also})` : 'not measured', pass: ok ? pass(r) : null });
  };
  const rate = (k: 'sessions' | 'refusals') => (r: TargetResults) => median(r[k].map((m) => m.perSec));
  ratioAim("Refusals/s at least HAProxy's", rate('refusals'), ' /s', 0, (r) => r >= 1);
  ratioAim("Sessions/s at least 0.9x HAProxy's (the issue's bare Node relay: 0.86x)", rate('sessions'), ' /s', 0, (r) => r >= 0.9);
  for (const [dir, label] of [
    ['down', 'backend → client'],
    ['up', 'client → backend'],
  ] as const) {
    if (d[dir].length === 0 || h[dir].length === 0) continue;
    ratioAim(`Bytes/s ${label} at least 0.8x HAProxy's (the issue's: 0.81x)`, (r) => median(r[dir].map((t) => t.bytesPerSec / MiB)), ' MiB/s', 0, (r) => r >= 0.8);
  }
  ratioAim("CPU per session at most 1.3x HAProxy's (the issue's: 1.4x)", (r) => median(r.sessions.map((m) => m.proxyCpuUsPerOp)), ' µs', 1, (r) => r <= 1.3);
  return aims;
}
