/**
 * The proxy benchmark: Doorman's guard proxy against HAProxy 2.6, in one run,
 * in front of the same Node backend (./backend.ts), driven by the same
 * generator (./loadgen.ts). Both proxies run side by side and are measured
 * in turn, the order alternating from round to round so that drift hits
 * both alike; the backend measured directly is the reference. Prints a
 * table with Doorman / HAProxy ratios and the aims' pass/miss, and writes
 * the raw figures to bench/results/proxy-<timestamp>.json.
 *
 * Settings (environment):
 *   BENCH_DURATION_S     each sessions and refusals run (default 10)
 *   BENCH_WARMUP_S       warm-up per target before the runs (default 2)
 *   BENCH_CLIENTS        concurrent clients (default 64)
 *   BENCH_ROUNDS         runs of each kind per target; medians reported (default 3)
 *   BENCH_SERVERS        doorman,relay,haproxy (default all three; relay is the
 *                        bare Node relay of ./node-relay.ts)
 *   BENCH_PIN            0: do not pin generator and backend to CPU 0, proxies to CPU 1
 *   BENCH_PROXY_BYTES    bytes per bulk transfer (default 1 GiB)
 *   BENCH_PROXY_TRANSFERS transfers per direction and target (default 3)
 *   BENCH_PROXY_UPLOAD   0: only backend → client transfers
 *   BENCH_OPEN_CONNS     idle connections for the memory reading (default 10000,
 *                        capped by the open-files limit: a proxy needs two per connection)
 *   BENCH_HAPROXY_THREADS nbthread (default 1 when pinned to one CPU, else 2)
 *   BENCH_PROXY_PROFILE  1: afterwards, one more sessions run against a
 *                        Doorman under --cpu-prof, summarized
 *   BENCH_NOISE_MAX      other processes above this share of a core make a run
 *                        noisy: it is waited out or repeated (default 0.1; ./noise.ts)
 *   BENCH_NOISE_BUDGET_S time the suite may spend waiting out noise (default 60)
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { DoormanProcess } from '../anvil/doorman.js';
import { pinToCpu } from '../anvil/proc.js';
import { freePort } from '../../test/helpers/postfix.js';
import { BackendProcess, type Stats } from './backend.js';
import { HaproxyProcess, haproxyUsable, haproxyVersion } from './haproxy.js';
import { closeAll, openAndReadBanner } from './loadgen.js';
import { measureLoop, measureOpen, measureTransfer, settledRss, warmUp, type Target, type TargetName } from './measure.js';
import { NodeRelayProcess } from './node-relay.js';
import { NoiseGuard } from './noise.js';
import { fdHardLimit, waitForPort } from './ports.js';
import { formatProfile, summarizeProfile } from './profile.js';
import { bottlenecks, buildTable, evaluateAims, formatAims, type Results, type TargetResults } from './report.js';
import { envNumber } from '../env.js';

const HOSTNAME = 'bench.example';
/** Per address on the sessions port: far above any client count, so nothing is refused. */
const NO_LIMIT = 1_000_000;
/** Doorman's max_connections per listener: above the open-connections test. */
const DOORMAN_MAX_CONNECTIONS = 20_000;
/** Descriptors a proxy needs besides two per connection (listeners, epoll, stdio, logs). */
const FD_RESERVE = 200;
const READY_TIMEOUT_MS = 20_000;

const SERVERS = ['doorman', 'relay', 'haproxy'] as const;
type Server = (typeof SERVERS)[number];

interface Config {
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly clients: number;
  readonly rounds: number;
  readonly servers: readonly Server[];
  readonly pin: boolean;
  readonly bytes: number;
  readonly transfers: number;
  readonly upload: boolean;
  readonly openWanted: number;
  readonly haproxyThreads: number | null;
  readonly profile: boolean;
  readonly noiseMax: number;
  readonly noiseBudgetMs: number;
}

function configFromEnv(env: NodeJS.ProcessEnv = process.env): Config {
  const n = (name: string, def: number, min: number, max: number): number => envNumber(name, def, min, max, env);
  const servers = (env.BENCH_SERVERS ?? SERVERS.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of servers) if (!(SERVERS as readonly string[]).includes(s)) throw new Error(`BENCH_SERVERS: unknown server ${s} (${SERVERS.join(', ')})`);
  return {
    durationMs: n('BENCH_DURATION_S', 10, 0.5, 600) * 1000,
    warmupMs: n('BENCH_WARMUP_S', 2, 0, 60) * 1000,
    clients: Math.round(n('BENCH_CLIENTS', 64, 1, 4000)),
    rounds: Math.round(n('BENCH_ROUNDS', 3, 1, 20)),
    servers: servers as Server[],
    pin: env.BENCH_PIN !== '0',
    bytes: Math.round(n('BENCH_PROXY_BYTES', 2 ** 30, 1, 2 ** 40)),
    transfers: Math.round(n('BENCH_PROXY_TRANSFERS', 3, 1, 20)),
    upload: env.BENCH_PROXY_UPLOAD !== '0',
    openWanted: Math.round(n('BENCH_OPEN_CONNS', 10_000, 0, 1_000_000)),
    haproxyThreads: env.BENCH_HAPROXY_THREADS ? Math.round(n('BENCH_HAPROXY_THREADS', 1, 1, 64)) : null,
    profile: env.BENCH_PROXY_PROFILE === '1',
    noiseMax: n('BENCH_NOISE_MAX', 0.1, 0, 2),
    noiseBudgetMs: n('BENCH_NOISE_BUDGET_S', 60, 0, 3600) * 1000,
  };
}

const progress = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const fmtN = (x: number) => Math.round(x).toLocaleString('en-US');

function doormanYaml(port: number, refusePort: number, backend: number, adminPort: number): string[] {
  const proxy = (p: number) =>
    `{ listen: ["127.0.0.1:${p}"], backend: 127.0.0.1:${backend}, proxy_protocol: v2, max_connections: ${DOORMAN_MAX_CONNECTIONS}, hostname: ${HOSTNAME} }`;
  return [
    // The admin API is on by default (it counts every connection for its metrics):
    // kept on, as shipped, but on a free port instead of the fixed default 8025.
    `admin: { listen: "127.0.0.1:${adminPort}" }`,
    'services:',
    `  smtp: { limits: { connections_per_address: ${NO_LIMIT} }, proxy: ${proxy(port)} }`,
    `  smtp-refuse: { protocol: smtp, limits: { connections_per_address: 1 }, proxy: ${proxy(refusePort)} }`,
  ];
}

async function startDoorman(backendPort: number, nodeFlags: string[] = []): Promise<{ d: DoormanProcess; target: Target }> {
  const [port, refusePort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const d = await DoormanProcess.start({
    maxEntries: 100_000,
    rateTimeUnit: '60s',
    // warn: nothing is logged per connection (HAProxy logs nothing either).
    logLevel: 'warn',
    anvil: false,
    nodeFlags,
    extraYaml: doormanYaml(port, refusePort, backendPort, adminPort),
    ready: async (signal) => {
      await waitForPort(port, READY_TIMEOUT_MS, signal);
      await waitForPort(refusePort, READY_TIMEOUT_MS, signal);
    },
  });
  return { d, target: { name: 'doorman', pid: d.pid, port, refusePort } };
}

export async function runProxySuite(): Promise<void> {
  const cfg = configFromEnv();
  const started = new Date();
  if (cfg.servers.includes('haproxy') && !haproxyUsable()) throw new Error('bench proxy: needs haproxy with Lua (apt-get install haproxy), or BENCH_SERVERS=doorman');
  const pin = cfg.pin && cpus().length >= 2 && pinToCpu(process.pid, 0);
  if (cfg.pin && !pin) progress('could not pin (taskset missing or one CPU): running unpinned');
  const nbthread = cfg.haproxyThreads ?? (pin ? 1 : 2);
  const fdLimit = fdHardLimit();
  const openConns = Math.min(cfg.openWanted, Math.max(0, Math.floor((fdLimit - FD_RESERVE) / 2)));
  const stoppers: Array<() => Promise<void> | void> = [];
  const results: Results = {};
  const fresh = (name: TargetName): TargetResults => ({ name, idleRssBytes: null, rssAfterLoadBytes: null, sessions: [], refusals: [], down: [], up: [], open: null });
  const ownPids: number[] = [];
  const noise = new NoiseGuard(cfg.noiseMax, cfg.noiseBudgetMs, () => ownPids, progress);
  let backendStats: Stats | null = null;
  try {
    progress('starting the backend');
    const backend = await BackendProcess.start();
    stoppers.push(() => backend.stop());
    ownPids.push(backend.pid);
    if (pin) pinToCpu(backend.pid, 0);
    const targets: Target[] = [{ name: 'direct', pid: null, port: backend.plainPort, refusePort: null }];
    results.direct = fresh('direct');

    if (cfg.servers.includes('doorman')) {
      progress('starting Doorman');
      const { d, target } = await startDoorman(backend.proxiedPort);
      stoppers.push(async () => void (await d.stop()));
      ownPids.push(d.pid);
      if (pin) pinToCpu(d.pid, 1);
      targets.push(target);
      results.doorman = fresh('doorman');
      results.doorman.idleRssBytes = await settledRss(d.pid);
    }
    if (cfg.servers.includes('relay')) {
      progress('starting the bare Node relay');
      const relay = await NodeRelayProcess.start(backend.proxiedPort);
      stoppers.push(() => relay.stop());
      ownPids.push(relay.pid);
      if (pin) pinToCpu(relay.pid, 1);
      targets.push({ name: 'relay', pid: relay.pid, port: relay.port, refusePort: null });
      results.relay = fresh('relay');
      results.relay.idleRssBytes = await settledRss(relay.pid);
    }
    if (cfg.servers.includes('haproxy')) {
      progress(`starting HAProxy (nbthread ${nbthread})`);
      const [port, refusePort] = [await freePort(), await freePort()];
      const maxconn = Math.min(Math.max(openConns, cfg.clients) + 1000, Math.floor((fdLimit - 64) / 2));
      const h = await HaproxyProcess.start({
        backend: `127.0.0.1:${backend.proxiedPort}`,
        hostname: HOSTNAME,
        frontends: [
          { name: 'smtp', port, perAddress: NO_LIMIT },
          { name: 'smtp_refuse', port: refusePort, perAddress: 1 },
        ],
        nbthread,
        maxconn,
      });
      stoppers.push(() => h.stop());
      ownPids.push(h.pid);
      if (pin) pinToCpu(h.pid, 1);
      targets.push({ name: 'haproxy', pid: h.pid, port, refusePort });
      results.haproxy = fresh('haproxy');
      results.haproxy.idleRssBytes = await settledRss(h.pid);
    }
    const proxies = targets.filter((t) => t.pid !== null);
    /** The bare relay has no limits: it refuses nobody. */
    const refusers = proxies.filter((t) => t.refusePort !== null);
    /** Round r runs the targets forwards when r is even, backwards when odd. */
    const inTurn = <T>(list: readonly T[], r: number) => (r % 2 === 0 ? list : [...list].reverse());
    const res = (t: Target) => results[t.name] as TargetResults;

    // Memory first, while the proxies are fresh: a Node heap grown by the load runs
    // shrinks at its own pace and would blur the per-connection figure.
    if (openConns > 0) {
      for (const t of proxies) {
        progress(`${t.name}: ${fmtN(openConns)} idle connections`);
        const o = await measureOpen(t, openConns);
        res(t).open = o;
        progress(`${t.name}:   opened ${fmtN(o.opened)} in ${fmtN(o.openMs)} ms, RSS ${(o.rssOpenBytes / 2 ** 20).toFixed(1)} MiB, errors ${o.errors}${o.firstError ? ` (${o.firstError})` : ''}`);
      }
    }

    for (const t of targets) {
      progress(`${t.name}: warm-up, sessions, ${cfg.warmupMs / 1000} s`);
      await warmUp(t, 'session', cfg.clients, cfg.warmupMs);
    }
    for (let r = 0; r < cfg.rounds; r++) {
      for (const t of inTurn(targets, r)) {
        progress(`${t.name}: sessions, ${cfg.clients} clients, ${cfg.durationMs / 1000} s (round ${r + 1}/${cfg.rounds})`);
        const m = await noise.run(t.name, 'sessions', () => measureLoop(t, 'session', cfg.clients, cfg.durationMs, backend.pid));
        res(t).sessions.push(m);
        progress(`${t.name}:   ${fmtN(m.perSec)} sessions/s, p99 ${fmtN(m.latency.p99Us)} µs, proxy CPU ${m.proxyCpuUsPerOp.toFixed(1)} µs/session, errors ${m.errors}`);
      }
    }

    // Refusals: one connection per proxy holds the address's only slot throughout.
    const held = [];
    for (const t of refusers) held.push(await openAndReadBanner(t.refusePort as number));
    try {
      for (const t of refusers) {
        progress(`${t.name}: warm-up, refusals, ${cfg.warmupMs / 1000} s`);
        await warmUp(t, 'refusal', cfg.clients, cfg.warmupMs);
      }
      for (let r = 0; r < cfg.rounds; r++) {
        for (const t of inTurn(refusers, r)) {
          progress(`${t.name}: 421 refusals, ${cfg.clients} clients, ${cfg.durationMs / 1000} s (round ${r + 1}/${cfg.rounds})`);
          const m = await noise.run(t.name, 'refusals', () => measureLoop(t, 'refusal', cfg.clients, cfg.durationMs, backend.pid));
          res(t).refusals.push(m);
          progress(`${t.name}:   ${fmtN(m.perSec)} refusals/s, proxy CPU ${m.proxyCpuUsPerOp.toFixed(1)} µs/refusal, errors ${m.errors}${m.firstError ? ` (${m.firstError})` : ''}`);
        }
      }
    } finally {
      await closeAll(held);
    }

    const directions = cfg.upload ? (['down', 'up'] as const) : (['down'] as const);
    for (const dir of directions) {
      for (let r = 0; r < cfg.transfers; r++) {
        for (const t of inTurn(targets, r)) {
          const m = await noise.run(t.name, `bulk ${dir}`, () => measureTransfer(t, cfg.bytes, dir, backend.pid));
          res(t)[dir].push(m);
          progress(`${t.name}: ${dir === 'down' ? 'backend → client' : 'client → backend'} ${(cfg.bytes / 2 ** 20).toFixed(0)} MiB: ${fmtN(m.bytesPerSec / 2 ** 20)} MiB/s`);
        }
      }
    }

    for (const t of proxies) res(t).rssAfterLoadBytes = await settledRss(t.pid as number);
    backendStats = await backend.stats();
  } finally {
    for (const stop of stoppers.reverse()) await stop();
  }

  const table = buildTable(results, cfg.clients, openConns, pin);
  const aims = evaluateAims(results);
  const env = {
    date: started.toISOString(),
    node: process.version,
    haproxy: haproxyVersion(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    pinned: pin ? { generator: 0, backend: 0, proxies: 1 } : null,
    haproxyThreads: nbthread,
    fdHardLimit: fdLimit,
  };
  const notes = [
    pin
      ? `Generator and backend pinned to CPU 0, each proxy to CPU 1; HAProxy with nbthread ${nbthread}${nbthread === 1 ? ' (one CPU for it, as for Doorman)' : ''}.`
      : `Nothing pinned; HAProxy with nbthread ${nbthread}.`,
    `Sessions and refusals: median of ${cfg.rounds} runs of ${cfg.durationMs / 1000} s each after ${cfg.warmupMs / 1000} s of warm-up, the order of the targets alternating by round. Bulk: median of ${cfg.transfers} transfers of ${(cfg.bytes / 2 ** 20).toFixed(0)} MiB per direction.`,
    'Doorman and HAProxy: limit per address on the sessions port far above the client count; on the refusals port 1, with one connection holding it; PROXY v2 to the backend; Doorman at log level warn, HAProxy without logging; Doorman with its admin API on (the default), HAProxy with its stats socket. The bare Node relay (bench/proxy/node-relay.ts: accept, connect, PROXY v2 header, `pipe` both ways; the daemon\'s Node flags and environment) checks nothing and refuses nobody.',
  ];
  notes.push(...bottlenecks(results, pin));
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const repeated = noise.discarded.map((d) => `${d.target} ${d.what} (${pct(d.otherShare)})`);
  const kept = noise.keptNoisy.map((d) => `${d.target} ${d.what} (${pct(d.otherShare)})`);
  notes.push(
    `Noise: runs wait for other processes to take under ${pct(cfg.noiseMax)} of a core, and a run disturbed anyway is repeated ` +
      `(${(noise.budgetSpentMs / 1000).toFixed(0)} s of a ${(cfg.noiseBudgetMs / 1000).toFixed(0)} s budget spent). Repeated: ${repeated.length === 0 ? 'none' : repeated.join(', ')}.` +
      (kept.length === 0 ? '' : ` **Kept although noisy, treat with care: ${kept.join(', ')}.**`),
  );
  if (openConns < cfg.openWanted) {
    notes.push(`Open connections capped at ${fmtN(openConns)} (asked ${fmtN(cfg.openWanted)}): the hard limit on open files here is ${fmtN(fdLimit)}, it cannot be raised without CAP_SYS_RESOURCE, and each proxy needs two descriptors per connection.`);
  }
  const b = backendStats;
  if (b !== null) {
    notes.push(`The backend parsed ${fmtN(b.v2)} PROXY v2 headers (last source ${b.lastSource}), ${b.v1} v1, ${b.local} LOCAL, ${b.badHeaders} malformed.`);
  }
  process.stdout.write(
    `\n## proxy: Doorman's guard proxy vs a bare Node relay and HAProxy ${env.haproxy} (${env.date}, Node ${env.node}, ${env.cpus} CPUs)\n\n` +
      `${table}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\n### Aims\n\n${formatAims(aims)}\n\n`,
  );
  for (const r of Object.values(results)) {
    for (const m of [...r.sessions, ...r.refusals]) {
      if (m.errors + m.stalled > 0) process.stdout.write(`WARNING: ${r.name}: ${m.kind} run with ${m.errors} errors, ${m.stalled} stalled (first: ${m.firstError})\n`);
    }
    if (r.open !== null && r.open.errors > 0) process.stdout.write(`WARNING: ${r.name}: ${r.open.errors} of ${r.open.wanted} idle connections failed (first: ${r.open.firstError})\n`);
  }

  const dir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  let profile = null;
  if (cfg.profile && cfg.servers.includes('doorman')) profile = await profileDoorman(cfg, pin, dir, stamp);
  const file = `${dir}proxy-${stamp}.json`;
  writeFileSync(file, JSON.stringify({ suite: 'proxy', env, config: { ...cfg, pin, openConns }, results, noise: { discarded: noise.discarded, keptNoisy: noise.keptNoisy, spentMs: noise.budgetSpentMs }, aims, notes, table, profile }, null, 2) + '\n');
  process.stdout.write(`raw results: ${file}\n`);
}

/** One sessions run against a fresh Doorman under --cpu-prof; prints and returns the summary. */
async function profileDoorman(cfg: Config, pin: boolean, dir: string, stamp: string): Promise<{ file: string; summary: ReturnType<typeof summarizeProfile> } | null> {
  const name = `proxy-doorman-${stamp}.cpuprofile`;
  progress('profile: a fresh backend and Doorman under --cpu-prof');
  const backend = await BackendProcess.start();
  try {
    if (pin) pinToCpu(backend.pid, 0);
    const { d, target } = await startDoorman(backend.proxiedPort, ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}`]);
    try {
      if (pin) pinToCpu(d.pid, 1);
      await warmUp(target, 'session', cfg.clients, cfg.warmupMs);
      const m = await measureLoop(target, 'session', cfg.clients, cfg.durationMs, backend.pid);
      progress(`profile: ${fmtN(m.perSec)} sessions/s under the profiler (it costs some)`);
    } finally {
      await d.stop();
    }
  } finally {
    backend.stop();
  }
  if (!readdirSync(dir).includes(name)) {
    progress(`profile: ${name} was not written`);
    return null;
  }
  const summary = summarizeProfile(`${dir}${name}`);
  process.stdout.write(`\n### Where Doorman's CPU goes (sessions run, --cpu-prof; includes warm-up and shutdown)\n\n${formatProfile(summary)}\n\nprofile: ${dir}${name}\n`);
  return { file: `${dir}${name}`, summary };
}
