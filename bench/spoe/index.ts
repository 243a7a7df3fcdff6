/**
 * The SPOE benchmark (issue 19): HAProxy 2.6 with Doorman as its SPOE agent
 * against HAProxy with a stick table only, in one run, in front of the same
 * backend (../proxy/backend.ts), driven by the same generator
 * (../proxy/loadgen.ts: connect, read 220, QUIT, read 221, close).
 *
 * One HAProxy process (nbthread 1), two frontends that differ only in the
 * SPOE filter and the rules reading its variables (as contrib/haproxy/'s,
 * whose doorman-spoe.conf and doorman.lua are used as shipped):
 *   stick   stick table (type ipv6, conn_cur), track-sc0 src, the Lua refusal
 *           over a fixed limit: per-address concurrency, HAProxy alone
 *   smtp    the same, plus `filter spoe` asking Doorman at each session, and
 *           the limit Doorman hands over instead of the fixed one
 * Doorman (its own process, log level warn, admin API on a free port) limits
 * connections per address and the connection rate of `smtp`, both far above
 * the load, so every session is judged and counted and none refused.
 *
 * Pinned (BENCH_PIN=1, the default): generator and backend on CPU 0, HAProxy
 * and Doorman together on CPU 1, so "the pair" is judged on the one core
 * HAProxy alone gets. Per target and round: sessions/s, p50/p99 of a session,
 * HAProxy's CPU per session and, for the pair, Doorman's CPU per decision:
 * its CPU time (/proc) from just before to just after the run, over the
 * decisions it made meanwhile (its /api/status).
 *
 * Settings: BENCH_DURATION_S (10), BENCH_WARMUP_S (2), BENCH_CLIENTS (64),
 * BENCH_ROUNDS (3), BENCH_PIN (1), BENCH_NOISE_MAX (0.1),
 * BENCH_NOISE_BUDGET_S (60); as in ../proxy (bench/README.md).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTRIB_HAPROXY, haproxyUnavailableReason, haproxyVersion, startHaproxy, type HaproxyInstance } from '../../test/helpers/haproxy.js';
import { freePort } from '../../test/helpers/postfix.js';
import { DoormanProcess } from '../anvil/doorman.js';
import { cpuTimeUs, machineBusyUs, pinToCpu } from '../anvil/proc.js';
import { onTeardown } from '../anvil/teardown.js';
import { envNumber } from '../env.js';
import { BackendProcess } from '../proxy/backend.js';
import { runLoop, type LoopResult } from '../proxy/loadgen.js';
import { NoiseGuard } from '../proxy/noise.js';
import { waitForPort } from '../proxy/ports.js';
import { formatProfile, summarizeProfile } from '../proxy/profile.js';
import { ALONE_SHAPES, agentAlone, type AloneRun } from './agent-alone.js';

const HOSTNAME = 'bench.example';
/** Per address: far above any client count, so nothing is refused. */
const NO_LIMIT = 1_000_000;
const READY_TIMEOUT_MS = 20_000;

type TargetName = 'stick' | 'pair';
interface Target {
  readonly name: TargetName;
  readonly port: number;
}

interface Run extends LoopResult {
  readonly target: TargetName;
  /** CPU over the measured window: HAProxy's and Doorman's µs, and shares of a core (generator and backend together; others: noise). */
  readonly cpu: { readonly haproxyUs: number; readonly doormanUs: number; readonly proxiesShare: number; readonly loadShare: number; readonly otherShare: number };
  readonly haproxyUsPerSession: number;
  /** Doorman's CPU over the whole run (drain included) and the decisions it made meanwhile; the pair only. */
  readonly doormanRunUs: number;
  readonly decisions: number;
  readonly doormanUsPerDecision: number;
  /** Decisions per socket read: how many NOTIFY frames HAProxy sent at once; and HAProxy's connections to Doorman after the run. */
  readonly decisionsPerRead: number;
  readonly agentConnections: number;
  /** (HAProxy + Doorman) CPU per session, from the window's readings. */
  readonly pairUsPerSession: number;
}

const progress = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const fmtN = (x: number) => Math.round(x).toLocaleString('en-US');
const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

/** haproxy.cfg for the two frontends; the SPOE one carries contrib/haproxy/haproxy.cfg's rules. */
function haproxyCfg(dir: string, stickPort: number, spoePort: number, backend: number, agent: number, maxconn: number): string {
  const table = ['    stick-table type ipv6 size 1m expire 10m store conn_cur', '    tcp-request connection track-sc0 src'];
  return [
    'global',
    '    nbthread 1',
    '    noreuseport',
    `    maxconn ${maxconn}`,
    `    stats socket ${join(dir, 'admin.sock')} mode 600 level admin`,
    `    lua-load-per-thread ${join(dir, 'doorman.lua')}`,
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 5m',
    '    timeout server 5m',
    'frontend stick',
    `    bind 127.0.0.1:${stickPort}`,
    `    maxconn ${maxconn}`,
    ...table,
    `    tcp-request content set-var(sess.doorman.text) "str('421 4.7.0 ${HOSTNAME} Too many connections from your address, try again later')" if { sc0_conn_cur gt ${NO_LIMIT} }`,
    `    tcp-request content use-service lua.doorman_refuse if { sc0_conn_cur gt ${NO_LIMIT} }`,
    '    default_backend mail',
    'frontend smtp',
    `    bind 127.0.0.1:${spoePort}`,
    `    maxconn ${maxconn}`,
    ...table,
    `    filter spoe engine doorman config ${join(dir, 'doorman-spoe.conf')}`,
    '    tcp-request content use-service lua.doorman_refuse if { var(sess.doorman.verdict) -m str refuse }',
    '    tcp-request content set-var(sess.doorman.text) var(sess.doorman.conn_text) if { sc0_conn_cur,sub(sess.doorman.conn_limit) gt 0 }',
    '    tcp-request content use-service lua.doorman_refuse if { sc0_conn_cur,sub(sess.doorman.conn_limit) gt 0 }',
    '    default_backend mail',
    'backend mail',
    `    server mail 127.0.0.1:${backend} send-proxy-v2`,
    'backend doorman-agents',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout server 1m',
    '    option spop-check',
    `    server doorman 127.0.0.1:${agent} check inter 2s fastinter 500ms`,
    '',
  ].join('\n');
}

async function decisionsOf(adminPort: number): Promise<{ decisions: number; reads: number; connections: number }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/api/status`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { front_ends?: { haproxy_spoe?: { decisions?: number; reads?: number; haproxy_connections?: number } } };
  const s = body.front_ends?.haproxy_spoe;
  if (typeof s?.decisions !== 'number' || typeof s.reads !== 'number') throw new Error('Doorman reports no haproxy_spoe decisions');
  return { decisions: s.decisions, reads: s.reads, connections: s.haproxy_connections ?? 0 };
}

async function measure(t: Target, h: HaproxyInstance, d: DoormanProcess, backendPid: number, adminPort: number, clients: number, durationMs: number): Promise<Run> {
  let h0 = 0;
  let d0 = 0;
  let b0 = 0;
  let busy0 = 0;
  let gen0: NodeJS.CpuUsage = { user: 0, system: 0 };
  let t0 = 0;
  let cpu: Run['cpu'] = { haproxyUs: 0, doormanUs: 0, proxiesShare: 0, loadShare: 0, otherShare: 0 };
  const dec0 = await decisionsOf(adminPort);
  const dRun0 = cpuTimeUs(d.pid);
  const r = await runLoop({
    port: t.port,
    kind: 'session',
    clients,
    durationMs,
    onStart: () => {
      h0 = cpuTimeUs(h.pid);
      d0 = cpuTimeUs(d.pid);
      b0 = cpuTimeUs(backendPid);
      busy0 = machineBusyUs();
      gen0 = process.cpuUsage();
      t0 = performance.now();
    },
    onStop: () => {
      const wallUs = (performance.now() - t0) * 1000;
      const g = process.cpuUsage(gen0);
      const hUs = cpuTimeUs(h.pid) - h0;
      const dUs = cpuTimeUs(d.pid) - d0;
      const load = g.user + g.system + cpuTimeUs(backendPid) - b0;
      // What is left of the machine's busy time is other processes' (noise), and the kernel's softirq work for loopback.
      const busy = machineBusyUs() - busy0;
      cpu = { haproxyUs: hUs, doormanUs: dUs, proxiesShare: (hUs + dUs) / wallUs, loadShare: load / wallUs, otherShare: Math.max(0, busy - hUs - dUs - load) / wallUs };
    },
  });
  const dRunUs = cpuTimeUs(d.pid) - dRun0;
  const dec1 = await decisionsOf(adminPort);
  const decisions = dec1.decisions - dec0.decisions;
  const reads = dec1.reads - dec0.reads;
  const pair = t.name === 'pair';
  return {
    ...r,
    target: t.name,
    cpu,
    haproxyUsPerSession: r.count === 0 ? NaN : cpu.haproxyUs / r.count,
    doormanRunUs: pair ? dRunUs : 0,
    decisions: pair ? decisions : 0,
    doormanUsPerDecision: pair && decisions > 0 ? dRunUs / decisions : NaN,
    decisionsPerRead: pair && reads > 0 ? decisions / reads : NaN,
    agentConnections: pair ? dec1.connections : 0,
    pairUsPerSession: r.count === 0 ? NaN : (cpu.haproxyUs + (pair ? cpu.doormanUs : 0)) / r.count,
  };
}

export async function runSpoeSuite(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const n = (name: string, def: number, min: number, max: number) => envNumber(name, def, min, max, env);
  const cfg = {
    durationMs: n('BENCH_DURATION_S', 10, 0.5, 600) * 1000,
    warmupMs: n('BENCH_WARMUP_S', 2, 0, 60) * 1000,
    clients: Math.round(n('BENCH_CLIENTS', 64, 1, 4000)),
    rounds: Math.round(n('BENCH_ROUNDS', 3, 1, 20)),
    pin: env.BENCH_PIN !== '0',
    noiseMax: n('BENCH_NOISE_MAX', 0.1, 0, 2),
    noiseBudgetMs: n('BENCH_NOISE_BUDGET_S', 60, 0, 3600) * 1000,
    /** BENCH_SPOE_PROFILE=1: Doorman runs under --cpu-prof; the profile is summarized at the end (and its figures are then not the product's). */
    profile: env.BENCH_SPOE_PROFILE === '1',
    /** Each agent-alone run (BENCH_SPOE_ALONE_S, 0 skips them). */
    aloneMs: n('BENCH_SPOE_ALONE_S', 3, 0, 60) * 1000,
  };
  const resultsDir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
  mkdirSync(resultsDir, { recursive: true });
  const why = haproxyUnavailableReason();
  if (why !== undefined) throw new Error(`bench spoe: ${why}`);
  const started = new Date();
  const pin = cfg.pin && cpus().length >= 2 && pinToCpu(process.pid, 0);
  const stoppers: Array<() => Promise<unknown> | void> = [];
  const ownPids: number[] = [];
  const noise = new NoiseGuard(cfg.noiseMax, cfg.noiseBudgetMs, () => ownPids, progress);
  const runs: Run[] = [];
  const alone: AloneRun[] = [];
  try {
    progress('starting the backend');
    const backend = await BackendProcess.start();
    stoppers.push(() => backend.stop());
    ownPids.push(backend.pid);
    if (pin) pinToCpu(backend.pid, 0);

    progress('starting Doorman (SPOE agent)');
    const [agentPort, adminPort, stickPort, spoePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const profileName = `spoe-doorman-${started.toISOString().replace(/[:.]/g, '-')}.cpuprofile`;
    const d = await DoormanProcess.start({
      nodeFlags: cfg.profile ? ['--cpu-prof', `--cpu-prof-dir=${resultsDir}`, `--cpu-prof-name=${profileName}`] : [],
      maxEntries: 100_000,
      rateTimeUnit: '60s',
      logLevel: 'warn',
      anvil: false,
      extraYaml: [
        `admin: { listen: "127.0.0.1:${adminPort}" }`,
        `haproxy_spoe: { listen: ["127.0.0.1:${agentPort}"], hostname: ${HOSTNAME} }`,
        'services:',
        `  smtp: { limits: { connections_per_address: ${NO_LIMIT}, connection_rate: 1000000000 } }`,
      ],
      ready: (signal) => waitForPort(agentPort, READY_TIMEOUT_MS, signal),
    });
    stoppers.push(() => d.stop());
    ownPids.push(d.pid);
    if (pin) pinToCpu(d.pid, 1);

    progress('starting HAProxy (nbthread 1): frontends stick (table only) and smtp (table + SPOE)');
    const lua = readFileSync(join(CONTRIB_HAPROXY, 'doorman.lua'), 'utf8');
    // BENCH_SPOE_AGENT: more spoe-agent lines, to try settings against the shipped ones (e.g. "maxconnrate 10").
    const extra = (env.BENCH_SPOE_AGENT ?? '').split(';').map((l) => l.trim()).filter(Boolean);
    const spoeConf = readFileSync(join(CONTRIB_HAPROXY, 'doorman-spoe.conf'), 'utf8').replace('spoe-agent doorman-agent\n', `spoe-agent doorman-agent\n${extra.map((l) => `    ${l}\n`).join('')}`);
    if (extra.length > 0) progress(`spoe-agent with: ${extra.join('; ')}`);
    const h = await startHaproxy({
      frontends: 0,
      waitUp: ['doorman-agents/doorman'],
      files: ({ dir }) => ({ 'haproxy.cfg': haproxyCfg(dir, stickPort, spoePort, backend.proxiedPort, agentPort, 4000), 'doorman.lua': lua, 'doorman-spoe.conf': spoeConf }),
    });
    const unregister = onTeardown(`haproxy pid ${h.pid}`, () => void h.stop());
    stoppers.push(async () => {
      unregister();
      await h.stop();
    });
    ownPids.push(h.pid);
    if (pin) pinToCpu(h.pid, 1);

    const targets: Target[] = [
      { name: 'stick', port: stickPort },
      { name: 'pair', port: spoePort },
    ];
    for (const t of targets) {
      progress(`${t.name}: warm-up, ${cfg.warmupMs / 1000} s`);
      if (cfg.warmupMs > 0) await runLoop({ port: t.port, kind: 'session', clients: cfg.clients, durationMs: cfg.warmupMs });
    }
    for (let r = 0; r < cfg.rounds; r++) {
      for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
        progress(`${t.name}: sessions, ${cfg.clients} clients, ${cfg.durationMs / 1000} s (round ${r + 1}/${cfg.rounds})`);
        const m = await noise.run(t.name, 'sessions', () => measure(t, h, d, backend.pid, adminPort, cfg.clients, cfg.durationMs));
        runs.push(m);
        const dm = t.name === 'pair' ? `, Doorman ${m.doormanUsPerDecision.toFixed(1)} µs/decision (${fmtN(m.decisions)}, ${m.decisionsPerRead.toFixed(1)} per read, ${m.agentConnections} connections)` : '';
        const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
        progress(`${t.name}:   ${fmtN(m.perSec)} sessions/s, p99 ${fmtN(m.latency.p99Us)} µs, HAProxy ${m.haproxyUsPerSession.toFixed(1)} µs/session${dm}, errors ${m.errors}; CPU: proxies ${pct(m.cpu.proxiesShare)}, generator+backend ${pct(m.cpu.loadShare)}, others ${pct(m.cpu.otherShare)}`);
      }
    }
    const log = h.log();
    if (/SPOE/.test(log)) progress(`HAProxy logged SPOE trouble:\n${log.slice(-2000)}`);

    // The agent alone, HAProxy's connections idle: what a decision costs as frames per read grow.
    for (const [c, w] of cfg.aloneMs > 0 ? ALONE_SHAPES : []) {
      progress(`agent alone: ${c} connections, ${w} frames per write, ${cfg.aloneMs / 1000} s`);
      const a = await agentAlone(d, agentPort, c, w, cfg.aloneMs);
      alone.push(a);
      progress(`agent alone:   ${fmtN(a.decisionsPerSec)} decisions/s, Doorman ${a.doormanUsPerDecision.toFixed(1)} µs/decision, ${(a.doormanShare * 100).toFixed(0)}% of a core`);
    }
  } finally {
    for (const stop of stoppers.reverse()) await stop();
  }
  if (cfg.profile) {
    const file = join(resultsDir, `spoe-doorman-${started.toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
    process.stdout.write(`\n### Doorman's CPU profile (${file})\n\n${formatProfile(summarizeProfile(file, 30))}\n`);
  }

  const of = (name: TargetName) => runs.filter((r) => r.target === name);
  const med = (name: TargetName, f: (r: Run) => number) => median(of(name).map(f));
  const shares = (name: TargetName) => ({ load: med(name, (r) => r.cpu.loadShare), proxies: med(name, (r) => r.cpu.proxiesShare) });
  const stick = { rate: med('stick', (r) => r.perSec), p50: med('stick', (r) => r.latency.p50Us), p99: med('stick', (r) => r.latency.p99Us), cpu: med('stick', (r) => r.haproxyUsPerSession), ...shares('stick') };
  const pair = {
    rate: med('pair', (r) => r.perSec),
    p50: med('pair', (r) => r.latency.p50Us),
    p99: med('pair', (r) => r.latency.p99Us),
    cpu: med('pair', (r) => r.haproxyUsPerSession),
    doorman: med('pair', (r) => r.doormanUsPerDecision),
    pairCpu: med('pair', (r) => r.pairUsPerSession),
    perRead: med('pair', (r) => r.decisionsPerRead),
    ...shares('pair'),
  };
  const ratio = pair.rate / stick.rate;
  const pc = (x: number) => `${(x * 100).toFixed(0)}%`;
  const all = (name: TargetName) => of(name).map((r) => fmtN(r.perSec)).join(', ');
  const table = [
    '| | HAProxy, stick table only | HAProxy + Doorman (SPOE) | pair / alone |',
    '|---|---:|---:|---:|',
    `| sessions/s (median; runs) | ${fmtN(stick.rate)} (${all('stick')}) | ${fmtN(pair.rate)} (${all('pair')}) | **${ratio.toFixed(2)}x** |`,
    `| session latency p50 / p99 | ${fmtN(stick.p50)} / ${fmtN(stick.p99)} µs | ${fmtN(pair.p50)} / ${fmtN(pair.p99)} µs | |`,
    `| HAProxy CPU per session | ${stick.cpu.toFixed(1)} µs | ${pair.cpu.toFixed(1)} µs | ${(pair.cpu / stick.cpu).toFixed(2)}x |`,
    `| Doorman CPU per decision | | **${pair.doorman.toFixed(1)} µs** | |`,
    `| CPU per session, both processes | ${stick.cpu.toFixed(1)} µs | ${pair.pairCpu.toFixed(1)} µs | ${(pair.pairCpu / stick.cpu).toFixed(2)}x |`,
    `| decisions per read (NOTIFY frames HAProxy sent at once) | | ${pair.perRead.toFixed(1)} | |`,
    `| cores busy: generator + backend / proxies | ${pc(stick.load)} / ${pc(stick.proxies)} | ${pc(pair.load)} / ${pc(pair.proxies)} | |`,
  ].join('\n');
  const aims = [
    `- sessions/s of the pair at 0.8x or better of HAProxy alone: ${ratio.toFixed(2)}x, ${ratio >= 0.8 ? 'pass' : 'miss'}`,
    `- Doorman's CPU per decision under 10 µs: ${pair.doorman.toFixed(1)} µs, ${pair.doorman < 10 ? 'pass' : 'miss'}`,
  ].join('\n');
  const errors = runs.filter((r) => r.errors + r.stalled > 0).map((r) => `${r.target}: ${r.errors} errors, ${r.stalled} stalled (first: ${r.firstError})`);
  const notes = [
    pin ? 'Generator and backend pinned to CPU 0; HAProxy (nbthread 1) and Doorman together on CPU 1.' : 'Nothing pinned.',
    'When the generator and backend take their whole core, they, not the proxies, set the rate: then CPU per session, both processes, is the fairer comparison.',
    `Median of ${cfg.rounds} runs of ${cfg.durationMs / 1000} s per target after ${cfg.warmupMs / 1000} s of warm-up, the order alternating by round; ${cfg.clients} clients each looping connect → 220 → QUIT → 221 → close.`,
    'Doorman CPU per decision: its utime+stime from just before to just after each run, over the decisions it reported meanwhile (/api/status front_ends.haproxy_spoe.decisions).',
    `Noise: ${noise.discarded.length} runs repeated, ${noise.keptNoisy.length} kept although noisy${noise.keptNoisy.length > 0 ? ` (${noise.keptNoisy.map((k) => `${k.target} ${(k.otherShare * 100).toFixed(0)}%`).join(', ')})` : ''}.`,
    ...errors.map((e) => `**Errors**: ${e}`),
  ];
  const aloneTable =
    alone.length === 0
      ? ''
      : [
          '\n\nDoorman\'s agent alone, driven by stand-ins for HAProxy (C connections, each W NOTIFY frames per write):\n',
          '| connections × frames per write | decisions/s | Doorman CPU per decision | Doorman, share of a core |',
          '|---|---:|---:|---:|',
          ...alone.map((a) => `| ${a.connections} × ${a.framesPerWrite} | ${fmtN(a.decisionsPerSec)} | ${a.doormanUsPerDecision.toFixed(1)} µs | ${(a.doormanShare * 100).toFixed(0)}% |`),
        ].join('\n');
  process.stdout.write(
    `\n## spoe: HAProxy ${haproxyVersion()} + Doorman's SPOE agent vs HAProxy with a stick table only (${started.toISOString()}, Node ${process.version}, ${cpus().length} CPUs)\n\n${table}${aloneTable}\n\n${notes.map((x) => `- ${x}`).join('\n')}\n\n### Aims\n\n${aims}\n\n`,
  );
  const file = `${resultsDir}spoe-${started.toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, `${JSON.stringify({ suite: 'spoe', config: { ...cfg, pin }, haproxy: haproxyVersion(), runs, alone, summary: { stick, pair, ratio }, table, notes }, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v), 2)}\n`);
  process.stdout.write(`raw results: ${file}\n`);
}
