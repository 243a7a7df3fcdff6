/**
 * A bounded soak: a real Doorman (the built CLI, as a child process, with
 * the daemon's Node flags) with the anvil service, the policy service on TCP
 * and a guard proxy for IMAP in front of ./backend.ts, driven by
 * ./traffic.ts for a fixed time. Samples the daemon's RSS, heap, open
 * descriptors and live counts before the traffic, after a warm-up, every
 * sampling period and at the end; once the traffic has stopped and every
 * client has closed, every count must be back to zero (./probe.ts
 * leftovers()), and the daemon must stop cleanly on SIGTERM.
 *
 * The RSS verdict compares floors, not single samples: under this traffic
 * the V8 heap climbs by about 50 MiB between major collections and RSS
 * with it (a first run saw 132 → 148 → 107 MiB in a minute), so two samples
 * differ by whatever point of that saw each caught. The lowest RSS of the
 * second half of the run (after the warm-up) against the lowest of the
 * first half is what the daemon keeps after collecting; growth past
 * max(30 MiB, 20 % of the first floor) fails. Smaller moves are V8's heap
 * sizing and glibc's arenas (the daemon keeps up to 128 MiB of freed malloc
 * memory mapped, MALLOC_TRIM_THRESHOLD_ in src/cli/node-flags.ts), while a
 * leak of even 100 bytes per operation would pass 30 MiB within the
 * 1.7 million operations of a ten-minute run at the defaults (230,000
 * anvil sessions, 117,000 policy transactions, 77,000 proxied sessions).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDoorman, type LogLine } from '../../test/helpers/daemon.js';
import { startSoakBackend } from './backend.js';
import { AdminApi, leftovers, sample, type Leak, type Sample } from './probe.js';
import { Traffic, type TrafficOptions } from './traffic.js';

export interface SoakOptions extends TrafficOptions {
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly sampleSeconds: number;
  /** Progress lines; default none. */
  readonly progress?: (line: string) => void;
}

export interface SoakReport {
  readonly seconds: number;
  readonly ops: Record<string, number>;
  readonly opsTotal: number;
  readonly errors: number;
  readonly firstErrors: readonly string[];
  readonly samples: readonly Sample[];
  readonly leaks: readonly Leak[];
  /** Bytes. Floors: the lowest sample of each half of the run after the warm-up. */
  readonly rss: { readonly warm: number; readonly firstFloor: number; readonly secondFloor: number; readonly end: number; readonly max: number; readonly growth: number; readonly limit: number };
  readonly heap: { readonly firstFloor: number; readonly secondFloor: number; readonly max: number };
  readonly daemonErrorLines: readonly string[];
  readonly exitCode: number | null;
  /** Why the run failed; empty when it passed. */
  readonly failures: readonly string[];
}

const MIB = 1024 * 1024;
export const RSS_GROWTH_MIN = 30 * MIB;
export const RSS_GROWTH_SHARE = 0.2;
/** After the traffic stops, the daemon closes sessions and gives counts back within this. */
const SETTLE_MS = 15_000;

function portFrom(line: LogLine): number {
  const p = line['port'];
  if (typeof p !== 'number') throw new Error(`no port in ${JSON.stringify(line)}`);
  return p;
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const say = o.progress ?? (() => {});
  const backend = await startSoakBackend();
  const dir = await mkdtemp(join(tmpdir(), 'doorman-soak-'));
  const doorman = await startDoorman({
    log: { level: 'info', format: 'json' },
    anvil: { socket: join(dir, 'anvil') },
    postfix_policy: { listen: ['127.0.0.1:0'] },
    services: {
      smtp: { limits: { connections_per_address: 1000, connections_per_prefix: 5000, message_rate: 1_000_000, recipient_rate: 1_000_000 } },
      imap: {
        limits: { connections_per_address: o.perAddressLimit, connections_per_prefix: 1000 },
        proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2', hostname: 'soak.test' },
      },
    },
  });
  const traffic = { current: null as Traffic | null };
  try {
    const pid = doorman.proc.pid as number;
    const logs = doorman.logs();
    const find = (pred: (l: LogLine) => boolean, what: string): LogLine => {
      const l = logs.find(pred);
      if (l === undefined) throw new Error(`no ${what} log line`);
      return l;
    };
    const admin = new AdminApi(`http://127.0.0.1:${portFrom(find((l) => String(l['msg']).startsWith('admin API and dashboard on'), 'admin'))}`);
    const policyPort = portFrom(find((l) => l['msg'] === 'postfix_policy service listening', 'policy'));
    const proxyPort = portFrom(find((l) => l['msg'] === 'proxy listening', 'proxy'));
    const samples: Sample[] = [await sample(admin, pid, 0, 'baseline')];

    const t = new Traffic({ anvilPath: join(dir, 'anvil'), policyPort, proxyPort, admin }, o);
    traffic.current = t;
    const started = Date.now();
    const elapsed = () => (Date.now() - started) / 1000;
    t.start();
    say(`soak: ${o.seconds} s of traffic (warm-up ${o.warmupSeconds} s), daemon pid ${pid}`);
    await sleep(o.warmupSeconds * 1000);
    samples.push(await sample(admin, pid, elapsed(), 'warm'));
    say(line(samples.at(-1) as Sample, t));
    while (elapsed() < o.seconds) {
      await sleep(Math.min(o.sampleSeconds, Math.max(0, o.seconds - elapsed())) * 1000);
      samples.push(await sample(admin, pid, elapsed(), 'run'));
      say(line(samples.at(-1) as Sample, t));
    }
    await t.stop();
    const seconds = elapsed();
    say(`soak: traffic stopped after ${seconds.toFixed(0)} s; waiting for the counts to settle`);

    const keys = [...t.keys];
    let leaks = await leftovers(admin, keys);
    const settleBy = Date.now() + SETTLE_MS;
    while (leaks.some((l) => l.value !== 0) && Date.now() < settleBy) {
      await sleep(500);
      leaks = await leftovers(admin, keys);
    }
    samples.push(await sample(admin, pid, elapsed(), 'end'));
    const daemonErrorLines = doorman
      .logs()
      .filter((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 50)
      .map((l) => JSON.stringify(l));
    const exitCode = await doorman.stop();

    const warm = samples.find((s) => s.phase === 'warm') as Sample;
    const loaded = samples.filter((s) => s.phase === 'warm' || s.phase === 'run');
    const middle = (warm.t + (loaded.at(-1) as Sample).t) / 2;
    const first = loaded.filter((s) => s.t <= middle);
    const second = loaded.filter((s) => s.t > middle);
    const floor = (xs: Sample[], f: (s: Sample) => number) => Math.min(...xs.map(f));
    const rssFloors = [floor(first, (s) => s.rss), second.length > 0 ? floor(second, (s) => s.rss) : floor(first, (s) => s.rss)] as const;
    const heapFloors = [floor(first, (s) => s.heapUsed), second.length > 0 ? floor(second, (s) => s.heapUsed) : floor(first, (s) => s.heapUsed)] as const;
    const end = samples.at(-1) as Sample;
    const growth = rssFloors[1] - rssFloors[0];
    const limit = Math.max(RSS_GROWTH_MIN, RSS_GROWTH_SHARE * rssFloors[0]);
    const failures: string[] = [];
    for (const l of leaks) if (l.value !== 0) failures.push(`leaked: ${l.what} = ${l.value}`);
    const baseFds = samples[0]?.openFds ?? NaN;
    if (end.openFds > baseFds + 2) failures.push(`open descriptors ${end.openFds} at the end, ${baseFds} before the traffic`);
    if (growth > limit) failures.push(`RSS floor grew ${(growth / MIB).toFixed(1)} MiB from the first half of the run to the second (limit ${(limit / MIB).toFixed(1)} MiB)`);
    if (t.errorCount > 0) failures.push(`${t.errorCount} unexpected outcomes in the traffic (first: ${t.errors[0]})`);
    if (daemonErrorLines.length > 0) failures.push(`${daemonErrorLines.length} error lines in the daemon's log (first: ${daemonErrorLines[0]})`);
    if (exitCode !== 0) failures.push(`the daemon exited with ${exitCode} on SIGTERM`);
    return {
      seconds,
      ops: Object.fromEntries([...t.ops].sort()),
      opsTotal: t.total(),
      errors: t.errorCount,
      firstErrors: t.errors,
      samples,
      leaks,
      rss: { warm: warm.rss, firstFloor: rssFloors[0], secondFloor: rssFloors[1], end: end.rss, max: Math.max(...samples.map((s) => s.rss)), growth, limit },
      heap: { firstFloor: heapFloors[0], secondFloor: heapFloors[1], max: Math.max(...samples.map((s) => s.heapUsed)) },
      daemonErrorLines: daemonErrorLines.slice(0, 20),
      exitCode,
      failures,
    };
  } finally {
    await traffic.current?.stop();
    await doorman.stop('SIGKILL');
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function line(s: Sample, t: Traffic): string {
  return `soak: ${s.t.toFixed(0).padStart(4)} s  ${s.phase.padEnd(4)}  rss ${(s.rss / MIB).toFixed(1)} MiB  heap ${(s.heapUsed / MIB).toFixed(1)} MiB  fds ${s.openFds}  live ${s.connections}  entries ${s.engineEntries}  lag p99 ${(s.eventLoopLagP99 * 1000).toFixed(1)} ms  ops ${t.total()}  errors ${t.errorCount}`;
}

/** The report as markdown: settings, operations, memory, the zero check, the verdict. */
export function formatReport(r: SoakReport, o: SoakOptions): string {
  const mib = (b: number) => `${(b / MIB).toFixed(1)} MiB`;
  const out: string[] = [];
  out.push(`## Soak: ${r.seconds.toFixed(0)} s (warm-up ${o.warmupSeconds} s), ${o.anvilClients} anvil clients, ${o.policyClients} policy clients, ${o.proxyWorkers} proxy workers`, '');
  out.push('| operation | count | per second |', '|---|---:|---:|');
  for (const [k, v] of Object.entries(r.ops)) out.push(`| ${k} | ${v} | ${(v / r.seconds).toFixed(1)} |`);
  out.push(`| **all** | **${r.opsTotal}** | **${(r.opsTotal / r.seconds).toFixed(1)}** |`, `| unexpected outcomes | ${r.errors} | |`, '');
  out.push('| sample | t (s) | RSS | heap used | daemon CPU since last | open fds | live connections | engine entries | event-loop lag p99 |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  r.samples.forEach((s, i) => {
    const prev = r.samples[i - 1];
    const cpu = prev === undefined || s.t <= prev.t ? '' : `${((100 * (s.cpu - prev.cpu)) / (s.t - prev.t)).toFixed(0)} %`;
    out.push(`| ${s.phase} | ${s.t.toFixed(0)} | ${mib(s.rss)} | ${mib(s.heapUsed)} | ${cpu} | ${s.openFds} | ${s.connections} | ${s.engineEntries} | ${(s.eventLoopLagP99 * 1000).toFixed(1)} ms |`);
  });
  out.push('');
  out.push(
    `RSS: after the warm-up ${mib(r.rss.warm)}; floor of the first half ${mib(r.rss.firstFloor)}, of the second ${mib(r.rss.secondFloor)} (growth ${mib(r.rss.growth)}, limit ${mib(r.rss.limit)}); end ${mib(r.rss.end)}; max ${mib(r.rss.max)}`,
    `heap used: floor of the first half ${mib(r.heap.firstFloor)}, of the second ${mib(r.heap.secondFloor)}; max ${mib(r.heap.max)}`,
    '',
  );
  out.push('| must be zero after the traffic | value |', '|---|---:|');
  for (const l of r.leaks) out.push(`| ${l.what} | ${l.value} |`);
  out.push('', `daemon exit on SIGTERM: ${r.exitCode}; error lines in its log: ${r.daemonErrorLines.length}`);
  if (r.firstErrors.length > 0) out.push('', 'first unexpected outcomes:', ...r.firstErrors.map((e) => `- ${e}`));
  out.push('', r.failures.length === 0 ? 'PASS' : `FAIL\n${r.failures.map((f) => `- ${f}`).join('\n')}`);
  return out.join('\n');
}
