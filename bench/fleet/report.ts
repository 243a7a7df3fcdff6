/** bench/fleet's tables: the runs, the ratios, redis-benchmark, Redis memory. */
import type { FleetSettings } from './index.js';
import type { NodeResult, StoreKind } from './node.js';
import type { Discarded } from '../proxy/noise.js';
import type { CommandStat, RedisBenchmarkResult } from './redis.js';

export interface NodeFigures extends NodeResult {
  /** The node's own CPU (utime + stime) per decision, µs. */
  readonly cpuUsPerDecision: number;
  /** Its share of one core over the window. */
  readonly core: number;
}

export interface RunResult {
  readonly name: string;
  readonly store: StoreKind;
  readonly nodes: readonly NodeFigures[];
  readonly totalPerSec: number;
  readonly redis: {
    readonly cpuUsPerDecision: number;
    readonly core: number;
    /** Commands sent by the nodes (not those run inside scripts) per decision. */
    readonly callsPerDecision: Record<string, number>;
    /** Time inside EVALSHA per call (commandstats), µs. */
    readonly evalshaExecUs: number;
    readonly evalshaPerSec: number;
    readonly commandStats: Record<string, CommandStat>;
  } | null;
  /** Share of a core taken by processes other than the nodes, Redis and the suite: noise. */
  readonly cpu: { readonly otherShare: number };
}

export interface MemoryFigures {
  readonly usedBytesBefore: number;
  readonly usedBytesAfter: number;
  readonly dbsize: number;
  /** Keys the runs added, less the nodes' key sets: the counted keys (one hash each). */
  readonly trackedKeys: number;
  readonly bytesPerKey: number;
  readonly bytesPerKeyWithoutSets: number;
  readonly nodeSets: { readonly keys: number; readonly bytes: number; readonly members: number };
  readonly hashSample: { readonly meanBytes: number; readonly fields: number; readonly sampled: number };
}

export interface FleetReport {
  /** Commit of the measured sources, and whether they moved during the run. */
  readonly source: string;
  readonly node: string;
  readonly redis: string;
  readonly settings: FleetSettings;
  readonly runs: readonly RunResult[];
  readonly memory: MemoryFigures;
  readonly redisBenchmark: readonly RedisBenchmarkResult[];
  readonly noise: { readonly discarded: readonly Discarded[]; readonly keptNoisy: ReadonlyArray<{ readonly target: string; readonly what: string; readonly otherShare: number }> };
}

const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const fix = (n: number, d = 1): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const pct = (n: number): string => `${Math.round(n * 100)}%`;
const ratio = (a: number, b: number): string => (b > 0 && Number.isFinite(a) ? `${(a / b).toFixed(2)}x` : 'n/a');
const slash = <T>(xs: readonly T[], f: (x: T) => string): string => xs.map(f).join(' / ');

function calls(r: RunResult): string {
  if (r.redis === null) return '';
  return Object.entries(r.redis.callsPerDecision)
    .filter(([, n]) => n >= 0.005)
    .sort((a, b) => b[1] - a[1])
    .map(([cmd, n]) => `${n.toFixed(2)} ${cmd.toUpperCase()}`)
    .join(', ');
}

export function formatReport(r: FleetReport): string {
  const s = r.settings;
  const out: string[] = [];
  out.push(
    `Doorman ${r.source}, Node ${r.node}, Redis ${r.redis}; ${s.addresses.toLocaleString('en-US')} client addresses at random, ${s.inflight} decisions in flight per node, ` +
      `${s.durationMs / 1000} s per run after ${s.warmupMs / 1000} s warm-up; ${s.pin ? 'redis-server on CPU 1, nodes and redis-benchmark on CPU 0' : 'nothing pinned'}.`,
    '',
    '| Run | Nodes | Decisions/s per node | Decisions/s total | p50 | p99 | Node CPU per decision | Node core | Redis CPU per decision | Redis core | Redis calls per decision | Time in EVALSHA per call | Other processes |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|',
  );
  for (const run of r.runs) {
    const x = run.redis;
    out.push(
      `| ${run.name} | ${run.nodes.length} | ${slash(run.nodes, (n) => int(n.decisions / n.seconds))} | ${int(run.totalPerSec)} | ` +
        `${slash(run.nodes, (n) => `${int(n.latency.p50Us)} µs`)} | ${slash(run.nodes, (n) => `${int(n.latency.p99Us)} µs`)} | ` +
        `${slash(run.nodes, (n) => `${fix(n.cpuUsPerDecision)} µs`)} | ${slash(run.nodes, (n) => pct(n.core))} | ` +
        `${x === null ? '' : `${fix(x.cpuUsPerDecision)} µs`} | ${x === null ? '' : pct(x.core)} | ${calls(run)} | ${x === null ? '' : `${fix(x.evalshaExecUs)} µs`} | ${pct(run.cpu.otherShare)} |`,
    );
  }
  const refused = r.runs.flatMap((run) => run.nodes.filter((n) => Object.keys(n.refused).length > 0 || n.failovers > 0).map((n) => `${n.node}: refused ${JSON.stringify(n.refused)}, failovers ${n.failovers}`));
  out.push('', refused.length === 0 ? 'Every decision was an allow; no store failure, no failover.' : `NOT ALL ALLOWED: ${refused.join('; ')}`);

  out.push('', '| redis-benchmark EVALSHA, same server | Calls/s | p50 | p99 | Redis CPU per call | Redis core | Time in EVALSHA per call | Other processes |', '|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const b of r.redisBenchmark) {
    out.push(`| ${b.script} | ${int(b.perSec)} | ${fix(b.p50Ms * 1000, 0)} µs | ${fix(b.p99Ms * 1000, 0)} µs | ${fix(b.serverCpuUsPerCall)} µs | ${pct(b.serverCore)} | ${fix(b.execUsPerCall)} µs | ${pct(b.cpu.otherShare)} |`);
  }
  out.push('', ...r.redisBenchmark.map((b) => `    ${b.command}`));
  for (const d of r.noise.discarded) out.push(`Repeated: ${d.target} (${d.what}), other processes took ${pct(d.otherShare)} of a core.`);
  for (const k of r.noise.keptNoisy) out.push(`NOISY, kept: ${k.target} (${k.what}), other processes took ${pct(k.otherShare)} of a core.`);

  const mem = r.runs.find((x) => x.store === 'memory');
  const one = r.runs.find((x) => x.store === 'redis' && x.nodes.length === 1);
  const daemon = r.runs.find((x) => x.store === 'daemon');
  const shared = r.runs.find((x) => x.store === 'redis' && x.nodes.length > 1);
  const acquire = r.redisBenchmark[0];
  const rows: Array<[string, string]> = [];
  if (mem && one) rows.push(['RedisStore / memory store, decisions/s, 1 node', ratio(one.totalPerSec, mem.totalPerSec)]);
  if (mem && daemon) rows.push(["Daemon's fleet store / memory store, decisions/s, 1 node", ratio(daemon.totalPerSec, mem.totalPerSec)]);
  if (one && acquire) rows.push(['RedisStore decisions/s, 1 node / redis-benchmark ACQUIRE EVALSHA/s', ratio(one.totalPerSec, acquire.perSec)]);
  if (one?.redis && acquire) rows.push(['RedisStore EVALSHA/s, 1 node (ACQUIRE + RELEASE per decision) / redis-benchmark ACQUIRE EVALSHA/s', ratio(one.redis.evalshaPerSec, acquire.perSec)]);
  if (daemon && acquire) rows.push(["Daemon's fleet store decisions/s, 1 node / redis-benchmark ACQUIRE EVALSHA/s", ratio(daemon.totalPerSec, acquire.perSec)]);
  if (shared && acquire) {
    for (const n of shared.nodes) rows.push([`RedisStore, ${shared.nodes.length} nodes: ${n.node} decisions/s / redis-benchmark ACQUIRE EVALSHA/s`, ratio(n.decisions / n.seconds, acquire.perSec)]);
    rows.push([`RedisStore, ${shared.nodes.length} nodes: total decisions/s / redis-benchmark ACQUIRE EVALSHA/s`, ratio(shared.totalPerSec, acquire.perSec)]);
  }
  if (shared && one) rows.push([`RedisStore, ${shared.nodes.length} nodes total / 1 node`, ratio(shared.totalPerSec, one.totalPerSec)]);
  out.push('', '| Ratio | |', '|---|---:|', ...rows.map(([k, v]) => `| ${k} | ${v} |`));

  const m = r.memory;
  out.push(
    '',
    '| Redis memory after the Redis runs | |',
    '|---|---:|',
    `| used_memory before / after | ${fix(m.usedBytesBefore / 1048576)} / ${fix(m.usedBytesAfter / 1048576)} MiB |`,
    `| keys (DBSIZE) | ${int(m.dbsize)} |`,
    `| counted keys (addresses and /24s, one hash each) | ${int(m.trackedKeys)} |`,
    `| used_memory growth per counted key | ${int(m.bytesPerKey)} B |`,
    `| of which the nodes' key sets (${m.nodeSets.keys} sets, ${int(m.nodeSets.members)} members, ${fix(m.nodeSets.bytes / 1048576)} MiB) | ${int(m.bytesPerKey - m.bytesPerKeyWithoutSets)} B |`,
    `| of which the counted keys themselves (hash, key, expiry) | ${int(m.bytesPerKeyWithoutSets)} B |`,
    `| MEMORY USAGE of a counted key (mean of ${m.hashSample.sampled}; ${fix(m.hashSample.fields)} fields) | ${int(m.hashSample.meanBytes)} B |`,
  );
  return out.join('\n');
}
