/**
 * Turns two ServerResults into the markdown table and the pass/miss list of
 * Doorman's aims. Ratios are Doorman / Postfix throughout: above 1 is better
 * for throughput, below 1 is better for latency, CPU and memory.
 */
import { rateBetween } from './loadgen.js';
import type { MeasuredRun, ServerResult } from './measure.js';

export interface Aim {
  readonly aim: string;
  readonly observed: string;
  readonly pass: boolean | null;
}

/** The window the "table holds many clients" figures use: the last 10% of the new-client run. */
export function lastTenthRate(r: MeasuredRun): number {
  return rateBetween(r, r.wallMs * 0.9, r.wallMs);
}

/** Requests/s over the first and last `ms` of a run. */
export function edgeRates(r: MeasuredRun, ms: number): { first: number; last: number } {
  return { first: rateBetween(r, 0, ms), last: rateBetween(r, Math.max(0, r.wallMs - ms), r.wallMs) };
}

/** Helper processes' CPU in cores; NaN (shown as n/a) for a server without helpers. */
function helperShare(r: ServerResult, run: MeasuredRun): number {
  return r.helpers.length === 0 ? NaN : run.helperCpuUs / (run.wallMs * 1000);
}

type Row = [label: string, doorman: string, postfix: string, ratio: string];

export function buildTable(d: ServerResult | undefined, p: ServerResult | undefined): string {
  const rows: Row[] = [];
  const num = (f: (r: ServerResult) => number, digits = 0, unit = '') => (r: ServerResult | undefined) =>
    r === undefined || !Number.isFinite(f(r)) ? 'n/a' : `${fmt(f(r), digits)}${unit}`;
  const ratio = (f: (r: ServerResult) => number, note = '') => {
    if (d === undefined || p === undefined) return 'n/a';
    const a = f(d);
    const b = f(p);
    return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${fmt(a / b, a / b >= 10 ? 1 : 2)}x${note}` : 'n/a';
  };
  const add = (label: string, f: (r: ServerResult) => number, digits = 0, unit = '', note = '', withRatio = true) =>
    rows.push([label, num(f, digits, unit)(d), num(f, digits, unit)(p), withRatio ? ratio(f, note) : '']);
  const lower = ' (lower is better)';

  const runRows = (name: string, pick: (r: ServerResult) => MeasuredRun) => {
    add(`${name}: requests/s`, (r) => pick(r).requestsPerSec);
    add(`${name}: p50 latency`, (r) => pick(r).latency.p50Us, 0, ' µs', lower);
    add(`${name}: p99 latency`, (r) => pick(r).latency.p99Us, 0, ' µs', lower);
    add(`${name}: server CPU per request`, (r) => pick(r).serverCpuUsPerRequest, 2, ' µs', lower);
    add(`${name}: server CPU (share of one core)`, (r) => pick(r).serverCpuShare * 100, 0, '%', '', false);
    add(`${name}: of which Postfix's master`, (r) => helperShare(r, pick(r)) * 100, 0, '%', '', false);
    add(`${name}: generator CPU (share of one core)`, (r) => pick(r).generatorCpuShare * 100, 0, '%', '', false);
    add(`${name}: other processes' CPU (noise)`, (r) => pick(r).otherCpuShare * 100, 0, '%', '', false);
  };
  const n = (d ?? p)?.hot.clients ?? 0;
  runRows(`Hot address, ${n} clients`, (r) => r.hot);
  runRows('Hot address, 1 client', (r) => r.hot1);
  const rate = (d ?? p)?.paced.ratePerSec;
  runRows(`Hot address, ${n} clients paced at ${fmt(rate ?? 0, 0)} req/s offered`, (r) => r.paced);
  add(`Hot address, paced: p99.9 latency`, (r) => r.paced.latency.p999Us, 0, ' µs', lower);

  const fresh = `New client every request, ${n} clients`;
  add(`${fresh}: distinct clients reached`, (r) => r.fresh.idents);
  add(`${fresh}: run time`, (r) => r.fresh.wallMs / 1000, 1, ' s', '', false);
  add(`${fresh}: requests/s, whole run`, (r) => r.fresh.requestsPerSec);
  add(`${fresh}: requests/s, first 5 s`, (r) => edgeRates(r.fresh, 5000).first);
  add(`${fresh}: requests/s, last 5 s`, (r) => edgeRates(r.fresh, 5000).last);
  add(`${fresh}: requests/s, last 10% of the run`, (r) => lastTenthRate(r.fresh));
  add(`${fresh}: p99 latency`, (r) => r.fresh.latency.p99Us, 0, ' µs', lower);
  add(`${fresh}: server CPU per request`, (r) => r.fresh.serverCpuUsPerRequest, 2, ' µs', lower);
  add(`${fresh}: server CPU (share of one core)`, (r) => r.fresh.serverCpuShare * 100, 0, '%', '', false);
  add(`${fresh}: of which Postfix's master`, (r) => helperShare(r, r.fresh) * 100, 0, '%', '', false);
  add(`${fresh}: generator CPU (share of one core)`, (r) => r.fresh.generatorCpuShare * 100, 0, '%', '', false);
  add(`${fresh}: other processes' CPU (noise)`, (r) => r.fresh.otherCpuShare * 100, 0, '%', '', false);

  add('Memory: RSS before the new-client run', (r) => r.memory.rssBeforeBytes / 2 ** 20, 1, ' MiB', '', false);
  add('Memory: RSS after it (2 s settled)', (r) => r.memory.rssAfterSettledBytes / 2 ** 20, 1, ' MiB', '', false);
  add('Memory: tracked clients', (r) => r.memory.trackedClients, 0, '', '', false);
  add('Memory: RSS per tracked client', (r) => r.memory.bytesPerClient, 0, ' B', lower);

  const out = ['| Figure | Doorman | Postfix anvil | Doorman / Postfix |', '|---|---:|---:|---:|'];
  for (const [a, b, c, r] of rows) out.push(`| ${a} | ${b} | ${c} | ${r} |`);
  return out.join('\n');
}

export function evaluateAims(d: ServerResult | undefined, p: ServerResult | undefined): Aim[] {
  const aims: Aim[] = [];
  const both = d !== undefined && p !== undefined;
  if (both) {
    const r = d.hot.requestsPerSec / p.hot.requestsPerSec;
    aims.push({
      aim: `At least 1.5x Postfix anvil's throughput, ${d.hot.clients} clients on a hot address`,
      observed: `${fmt(r, 2)}x (${fmt(d.hot.requestsPerSec, 0)} vs ${fmt(p.hot.requestsPerSec, 0)} req/s)`,
      pass: r >= 1.5,
    });
    const ld = lastTenthRate(d.fresh);
    const lp = lastTenthRate(p.fresh);
    const rf = ld / lp;
    aims.push({
      aim: '10x Postfix anvil\'s throughput once the table holds many clients (new client every request, last 10% of each run)',
      observed:
        `${fmt(rf, 1)}x (${fmt(ld, 0)} req/s with ${fmt(d.fresh.idents, 0)} clients tracked vs ` +
        `${fmt(lp, 0)} req/s with ${fmt(p.fresh.idents, 0)})`,
      pass: rf >= 10,
    });
  } else {
    aims.push({ aim: 'Throughput ratios', observed: 'not measured: needs both servers in the same run', pass: null });
  }
  if (d !== undefined) {
    aims.push({
      aim: 'p99 latency under 1 ms, 1 client (latency focus)',
      observed: `${fmt(d.hot1.latency.p99Us, 0)} µs`,
      pass: d.hot1.latency.p99Us < 1000,
    });
    aims.push({
      aim: `p99 latency under 1 ms, ${d.hot.clients} clients on a hot address`,
      observed: `${fmt(d.hot.latency.p99Us, 0)} µs (${d.hot.clients} requests always in flight: by Little's law the mean alone is ${d.hot.clients} / throughput = ${fmt((d.hot.clients / d.hot.requestsPerSec) * 1e6, 0)} µs)`,
      pass: d.hot.latency.p99Us < 1000,
    });
    aims.push({
      aim: `p99 latency under 1 ms, ${d.paced.clients} clients at ${fmt(d.paced.ratePerSec ?? 0, 0)} req/s offered (below saturation)`,
      observed: `${fmt(d.paced.latency.p99Us, 0)} µs (p99.9 ${fmt(d.paced.latency.p999Us, 0)} µs)`,
      pass: d.paced.latency.p99Us < 1000,
    });
    aims.push({
      aim: 'Under 200 bytes of RSS per tracked client',
      observed: `${fmt(d.memory.bytesPerClient, 0)} B (${fmt(d.memory.trackedClients, 0)} clients)`,
      pass: d.memory.bytesPerClient < 200,
    });
  }
  return aims;
}

export function formatAims(aims: Aim[]): string {
  const out = ['| Aim | Observed | Result |', '|---|---|---|'];
  for (const a of aims) out.push(`| ${a.aim} | ${a.observed} | ${a.pass === null ? 'n/a' : a.pass ? 'pass' : '**miss**'} |`);
  return out.join('\n');
}

/** en-US digits with thousands commas, e.g. 123,456 or 1.25. */
export function fmt(n: number, digits: number): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** How the tracked-client counts were checked, one line per server. */
export function formatChecks(results: ReadonlyArray<ServerResult>): string {
  const lines: string[] = [];
  for (const r of results) {
    const m = r.memory;
    const looked = m.lookups.map((l) => `${l.ident} rate=${l.reply?.rate ?? `error: ${l.error}`}`).join(', ');
    const sent = m.lookups.slice(0, -1).every((l) => (l.reply?.rate ?? 0) >= 1);
    const never = m.lookups.length > 0 && m.lookups[m.lookups.length - 1]?.reply?.rate === 0;
    let line = `- ${r.server}: ${fmt(m.trackedClients, 0)} new clients sent; lookup ${looked}: ${sent && never ? 'consistent' : '**inconsistent**'}`;
    if (m.maxCacheSize !== null) {
      const expected = m.trackedClients + 1;
      line += `; logged "statistics: max cache size ${m.maxCacheSize}" (expected ${expected}: the new clients and the hot address)`;
    }
    lines.push(line);
  }
  return lines.join('\n');
}
