/**
 * bench/fleet: what a connection decision costs when the fleet counts in
 * one Redis, against the single-host memory store, and against what Redis
 * itself serves to redis-benchmark — all on the same redis-server in one run.
 *
 * A node is one Node process (./node.ts) making full decisions — the guard
 * proxy's gate.admit() then gate.leave() — for an IMAP service limited per
 * address and per /24, so each decision counts two keys: with the Redis
 * store one ACQUIRE script call (acquireMany) and a release. Runs, each
 * after a warm-up, the same measured window for every node:
 *   1. memory store, 1 node;
 *   2. RedisStore alone, 1 node (the daemon's Redis client, no failover);
 *   3. the daemon's fleet store (openStore: FailoverStore over RedisStore,
 *      renewing leases every lease/3), 1 node;
 *   4. RedisStore, BENCH_FLEET_NODES nodes sharing the Redis.
 * Then Redis's used_memory per tracked key, and redis-benchmark's EVALSHA
 * with Doorman's ACQUIRE script (and a trivial two-key script) on the same
 * server. Redis gets CPU 1; nodes, redis-benchmark and this process CPU 0.
 *
 * Settings (environment):
 *   BENCH_DURATION_S         each measured run (default 10)
 *   BENCH_WARMUP_S           warm-up before each (default 2)
 *   BENCH_CLIENTS            decisions in flight per node; redis-benchmark -c (default 64)
 *   BENCH_FLEET_ADDRESSES    distinct client addresses, drawn at random (default 100000)
 *   BENCH_FLEET_NODES        nodes in the shared run (default 2)
 *   BENCH_FLEET_RB_REQUESTS  requests per redis-benchmark run (default 500000)
 *   BENCH_PIN                0: pin nothing
 *   BENCH_NOISE_MAX          other processes above this share of a core make a run
 *                            noisy: it is waited out or repeated, as in bench/proxy (0.1)
 *   BENCH_NOISE_BUDGET_S     time the suite may spend on noise (default 60)
 * Writes the raw figures to bench/results/fleet-<timestamp>.json.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { TestRedis, redisAvailable, REDIS_SERVER } from '../../test/helpers/redis.js';
import { cpuTimeUs, machineBusyUs, pinToCpu } from '../anvil/proc.js';
import { onTeardown } from '../anvil/teardown.js';
import { envInt, envNumber } from '../env.js';
import { NoiseGuard } from '../proxy/noise.js';
import type { FromNode, NodeResult, NodeTask, StoreKind, ToNode } from './node.js';
import { info, mark, memory, redisBenchmark, sampleKeyBytes, scriptCases, setsBytes, statsDelta, REDIS_BENCHMARK, type CommandStat, type RedisBenchmarkResult } from './redis.js';
import { formatReport, type FleetReport, type MemoryFigures, type RunResult } from './report.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NODE_JS = join(ROOT, 'dist', 'bench', 'fleet', 'node.js');
const READY_TIMEOUT_MS = 30_000;
/** Time after `go` before the window opens, for the message to reach every node. */
const GO_LEAD_MS = 100;
const SEED = 0x5eed_f1ee;
const LEASE_MS = 30_000;
const RATE_UNIT_MS = 60_000;
const NODES_CPU = 0;
const REDIS_CPU = 1;

export interface FleetSettings {
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly inflight: number;
  readonly addresses: number;
  readonly nodes: number;
  readonly rbRequests: number;
  readonly pin: boolean;
  readonly noiseMax: number;
  readonly noiseBudgetMs: number;
}

export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): FleetSettings {
  return {
    durationMs: envNumber('BENCH_DURATION_S', 10, 1, 600, env) * 1000,
    warmupMs: envNumber('BENCH_WARMUP_S', 2, 0, 60, env) * 1000,
    inflight: envInt('BENCH_CLIENTS', 64, 1, 10_000, env),
    addresses: envInt('BENCH_FLEET_ADDRESSES', 100_000, 1, 10_000_000, env),
    nodes: envInt('BENCH_FLEET_NODES', 2, 1, 16, env),
    rbRequests: envInt('BENCH_FLEET_RB_REQUESTS', 500_000, 1000, 100_000_000, env),
    pin: envInt('BENCH_PIN', 1, 0, 1, env) === 1,
    noiseMax: envNumber('BENCH_NOISE_MAX', 0.1, 0, 2, env),
    noiseBudgetMs: envNumber('BENCH_NOISE_BUDGET_S', 60, 0, 3600, env) * 1000,
  };
}

interface Spawned {
  readonly child: ChildProcess;
  readonly result: Promise<NodeResult>;
}

/** Forks one node and resolves once it is ready to decide. */
function spawnNode(task: NodeTask, pin: boolean): Promise<Spawned> {
  const child = fork(NODE_JS, [JSON.stringify(task)], { execArgv: [...DAEMON_NODE_FLAGS], env: { ...process.env, ...DAEMON_ENV }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const stop = onTeardown(`fleet node ${task.node}`, () => child.kill('SIGKILL'));
  if (pin && child.pid !== undefined) pinToCpu(child.pid, NODES_CPU);
  let ready: () => void = () => {};
  let failed: (err: Error) => void = () => {};
  const readyP = new Promise<void>((resolve, reject) => {
    ready = resolve;
    failed = reject;
  });
  const result = new Promise<NodeResult>((resolve, reject) => {
    child.on('message', (m: FromNode) => {
      if (m.type === 'ready') ready();
      else if (m.type === 'result') resolve(m.result);
      else {
        const err = new Error(`fleet node ${task.node}: ${m.message}`);
        failed(err);
        reject(err);
      }
    });
    child.once('exit', (code) => {
      stop();
      const err = new Error(`fleet node ${task.node} exited with ${code}`);
      failed(err);
      reject(err);
    });
  });
  result.catch(() => {});
  const timer = setTimeout(() => failed(new Error(`fleet node ${task.node} not ready after ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
  return readyP.then(
    () => {
      clearTimeout(timer);
      return { child, result };
    },
    (err: unknown) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      throw err;
    },
  );
}

/** Commands scripts run inside an EVALSHA (counted by commandstats under their own names): not round trips. */
const IN_SCRIPT = new Set(['hgetall', 'hset', 'hdel', 'pexpire', 'pttl', 'hincrby']);

interface RunPlan {
  readonly name: string;
  readonly store: StoreKind;
  readonly nodes: number;
}

interface Server {
  readonly url: string;
  readonly client: Redis;
  readonly pid: number;
}

/** One run: fork the nodes, let them warm up, read every process's CPU and Redis's statistics at the window's edges. */
async function runOnce(plan: RunPlan, s: FleetSettings, server: Server): Promise<RunResult> {
  const usesRedis = plan.store !== 'memory';
  process.stdout.write(`bench fleet: ${plan.name}, ${plan.nodes} node${plan.nodes > 1 ? 's' : ''}, ${s.inflight} decisions in flight each, ${s.warmupMs / 1000} s warm-up + ${s.durationMs / 1000} s\n`);
  const nodes = await Promise.all(
    Array.from({ length: plan.nodes }, (_, i) =>
      spawnNode({ store: plan.store, redisUrl: usesRedis ? server.url : null, node: `${plan.store}-${plan.nodes}n-${i + 1}`, addresses: s.addresses, seed: SEED, index: i, inflight: s.inflight }, s.pin),
    ),
  );
  const from = Date.now() + GO_LEAD_MS + s.warmupMs;
  const to = from + s.durationMs;
  for (const n of nodes) n.child.send({ type: 'go', from, to } satisfies ToNode);
  await sleep(from - Date.now());
  const pids = nodes.map((n) => n.child.pid as number);
  const busy0 = machineBusyUs();
  const self0 = process.cpuUsage();
  const cpu0 = pids.map(cpuTimeUs);
  const srv0 = await mark(server.client, server.pid);
  await sleep(to - Date.now());
  const cpu1 = pids.map(cpuTimeUs);
  const srv1 = await mark(server.client, server.pid);
  const self = process.cpuUsage(self0);
  const busy = machineBusyUs() - busy0;
  const nodesUs = cpu1.reduce((a, c, i) => a + c - (cpu0[i] as number), 0);
  const otherShare = Math.max(0, busy - nodesUs - (srv1.cpuUs - srv0.cpuUs) - self.user - self.system) / (s.durationMs * 1000);
  const results = await Promise.all(nodes.map((n) => n.result));
  const wallUs = s.durationMs * 1000;
  const decisions = results.reduce((a, r) => a + r.decisions, 0);
  let redis: RunResult['redis'] = null;
  if (usesRedis) {
    const delta = statsDelta(srv0.stats, srv1.stats);
    delta.delete('info');
    const perDecision: Record<string, number> = {};
    for (const [cmd, st] of delta) if (!IN_SCRIPT.has(cmd)) perDecision[cmd] = st.calls / decisions;
    const evalsha = delta.get('evalsha') ?? { calls: 0, usec: 0 };
    redis = {
      cpuUsPerDecision: (srv1.cpuUs - srv0.cpuUs) / decisions,
      core: (srv1.cpuUs - srv0.cpuUs) / wallUs,
      callsPerDecision: perDecision,
      evalshaExecUs: evalsha.calls === 0 ? NaN : evalsha.usec / evalsha.calls,
      evalshaPerSec: evalsha.calls / (s.durationMs / 1000),
      commandStats: Object.fromEntries(delta) as Record<string, CommandStat>,
    };
  }
  return {
    name: plan.name,
    store: plan.store,
    nodes: results.map((r, i) => ({ ...r, cpuUsPerDecision: ((cpu1[i] as number) - (cpu0[i] as number)) / r.decisions, core: ((cpu1[i] as number) - (cpu0[i] as number)) / wallUs })),
    totalPerSec: decisions / (s.durationMs / 1000),
    redis,
    cpu: { otherShare },
  };
}

/**
 * The commit and whether the store or core sources differ from it. Others
 * commit and rebuild dist/ on this machine while a suite runs, and each
 * node loads dist/ when it is forked: a version that moves mid-run is reported.
 */
function sourceVersion(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', timeout: 5000 }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src/store', 'src/core'], { cwd: ROOT, encoding: 'utf8', timeout: 5000 }).trim();
    return dirty === '' ? head : `${head}+uncommitted changes in src/store or src/core`;
  } catch {
    return 'unknown';
  }
}

async function startRedis(pin: boolean): Promise<{ server: TestRedis; client: Redis; pid: number }> {
  const server = await TestRedis.start();
  const client = new Redis(server.url, { lazyConnect: true });
  await client.connect();
  const pid = Number((await info(client, 'server')).get('process_id'));
  onTeardown('fleet redis-server', () => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  if (pin) pinToCpu(pid, REDIS_CPU);
  return { server, client, pid };
}

async function measureMemory(client: Redis, baseline: { usedBytes: number; keys: number }): Promise<MemoryFigures> {
  const after = await memory(client);
  const sets = await setsBytes(client, 'doorman:node:*');
  const hashes = await sampleKeyBytes(client, 'doorman:k:*', 200);
  const tracked = after.keys - baseline.keys - sets.keys;
  const grown = after.usedBytes - baseline.usedBytes;
  return {
    usedBytesBefore: baseline.usedBytes,
    usedBytesAfter: after.usedBytes,
    dbsize: after.keys,
    trackedKeys: tracked,
    bytesPerKey: grown / tracked,
    bytesPerKeyWithoutSets: (grown - sets.bytes) / tracked,
    nodeSets: sets,
    hashSample: hashes,
  };
}

export async function runFleetSuite(): Promise<void> {
  const s = settingsFromEnv();
  if (!redisAvailable() || !existsSync(REDIS_BENCHMARK)) throw new Error(`bench fleet needs ${REDIS_SERVER} and ${REDIS_BENCHMARK} (Debian package redis-server / redis-tools)`);
  if (s.pin) pinToCpu(process.pid, NODES_CPU);
  const versionAtStart = sourceVersion();
  const { server, client, pid } = await startRedis(s.pin);
  try {
    const version = (await info(client, 'server')).get('redis_version') ?? '?';
    const target: Server = { url: server.url, client, pid };
    const progress = (msg: string) => process.stdout.write(`bench fleet: ${msg}\n`);
    // Between runs only Redis is ours; nodes live within a run.
    const noise = new NoiseGuard(s.noiseMax, s.noiseBudgetMs, () => [pid], progress);
    const plans: RunPlan[] = [
      { name: 'Memory store', store: 'memory', nodes: 1 },
      { name: 'RedisStore', store: 'redis', nodes: 1 },
      { name: "Daemon's fleet store (failover + renewals)", store: 'daemon', nodes: 1 },
      { name: 'RedisStore, shared', store: 'redis', nodes: s.nodes },
    ];
    const runs: RunResult[] = [];
    let baseline = await memory(client);
    for (const plan of plans) {
      runs.push(await noise.run(plan.name, `${plan.nodes} node(s)`, () => runOnce(plan, s, target)));
      if (plan.store === 'memory') {
        await client.flushall();
        baseline = await memory(client);
      }
    }
    const mem = await measureMemory(client, baseline);
    const rb: RedisBenchmarkResult[] = [];
    for (const c of scriptCases(Date.now(), LEASE_MS, RATE_UNIT_MS)) {
      progress(`redis-benchmark EVALSHA ${c.name}, ${s.rbRequests} requests, -c ${s.inflight}`);
      rb.push(await noise.run('redis-benchmark', c.name, () => redisBenchmark(client, pid, server.port, c, s.rbRequests, s.inflight, s.addresses, s.pin ? NODES_CPU : null)));
    }
    const versionAtEnd = sourceVersion();
    const source = versionAtEnd === versionAtStart ? versionAtStart : `MOVED during the run: ${versionAtStart} at start, ${versionAtEnd} at the end`;
    const report: FleetReport = { source, node: process.version, redis: version, settings: s, runs, memory: mem, redisBenchmark: rb, noise: { discarded: noise.discarded, keptNoisy: noise.keptNoisy } };
    process.stdout.write(`\n${formatReport(report)}\n`);
    const dir = join(ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `fleet-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
    process.stdout.write(`bench fleet: raw figures in ${file}\n`);
  } finally {
    client.disconnect();
    await server.stop();
  }
}
