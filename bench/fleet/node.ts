/**
 * One fleet node for bench/fleet: a process of its own (forked, with IPC)
 * that makes connection decisions as the guard proxy does — gate.admit()
 * of an IMAP client, then gate.leave() of its keys — with a fixed number of
 * decisions in flight, each for an address drawn at random from a fixed pool.
 *
 * The service limits connections per address and per /24, so every decision
 * touches two keys: with the Redis store, admit is one ACQUIRE script call
 * (acquireMany) and leave one or more RELEASE calls. Limits are far above
 * the load, so every decision is an allow and the work is the counting.
 *
 * Protocol with the parent (./index.ts): the task comes as argv[2] (JSON);
 * the node builds its store and says {type:'ready'}; the parent answers
 * {type:'go', from, to} (epoch ms, the same window for every node); the node
 * decides until `to`, counts the decisions that started at or after `from`,
 * sends {type:'result'} and exits.
 *
 * Stores (task.store):
 *   memory  MemoryStore, the single-host store;
 *   redis   RedisStore on the daemon's own client (createRedisClient), as
 *           the store alone: no failover, no renewal timer;
 *   daemon  openStore(), exactly what `doorman serve` builds in fleet mode:
 *           FailoverStore over that RedisStore, renewing every lease/3.
 */
import { pino } from 'pino';
import { parseConfig, type Config } from '../../src/config/load.js';
import { systemClock } from '../../src/core/clock.js';
import { Gatekeeper, NO_COUNTRIES } from '../../src/core/gate.js';
import { slidingWindow } from '../../src/store/rate.js';
import type { FailoverStore } from '../../src/store/failover.js';
import { MemoryStore } from '../../src/store/memory.js';
import { openStore } from '../../src/store/open.js';
import { connectWithin, createRedisClient } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis.js';
import type { CounterStore } from '../../src/core/ports.js';
import { Histogram, type LatencySummary } from '../anvil/histogram.js';

export type StoreKind = 'memory' | 'redis' | 'daemon';

export interface NodeTask {
  readonly store: StoreKind;
  readonly redisUrl: string | null;
  /** Node name, unique per run. */
  readonly node: string;
  readonly addresses: number;
  /** Seeds the address pool (the same for every node) and, with the node's index, its draws. */
  readonly seed: number;
  readonly index: number;
  readonly inflight: number;
}

export interface NodeResult {
  readonly node: string;
  readonly decisions: number;
  readonly seconds: number;
  readonly latency: LatencySummary;
  /** Decisions that were not an allow, by rule (a store failure under on_store_failure, say). */
  readonly refused: Record<string, number>;
  /** daemon store: switches to the memory fallback during the run. */
  readonly failovers: number;
}

export type FromNode = { type: 'ready' } | { type: 'result'; result: NodeResult } | { type: 'error'; message: string };
export type ToNode = { type: 'go'; from: number; to: number };

const RATE_UNIT_MS = 60_000;
/** Far above what one run can reach, so nothing is refused and the cost is the counting alone. */
const NO_LIMIT = 1_000_000_000;

/** The configuration a node runs with: one IMAP service counting per address and per /24. */
export function benchConfig(redisUrl: string | null, node: string): Config {
  return parseConfig(
    {
      anvil: { enabled: false },
      admin: { listen: null },
      store: redisUrl === null ? { type: 'memory' } : { type: 'redis', node, redis: { url: redisUrl } },
      services: { imap: { limits: { connections_per_address: NO_LIMIT, connections_per_prefix: NO_LIMIT } } },
    },
    'bench/fleet',
  );
}

/** xorshift32: cheap, seeded, the same sequence on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

/** `n` distinct public IPv4 addresses in canonical text, spread over the whole space (so /24s rarely repeat). */
export function addressPool(n: number, seed: number): string[] {
  const next = rng(seed);
  const seen = new Set<number>();
  const out: string[] = [];
  while (out.length < n) {
    const x = next();
    const a = x >>> 24;
    // Skip 0/8, 10/8, 100/8 (CGNAT), 127/8, 169/8, 172/8, 192/8, 198/8, 203/8 (special and documentation blocks) and multicast up.
    if (a === 0 || a === 10 || a === 100 || a === 127 || a === 169 || a === 172 || a === 192 || a === 198 || a === 203 || a >= 224) continue;
    if ((x & 255) === 0 || (x & 255) === 255 || seen.has(x)) continue;
    seen.add(x);
    out.push(`${a}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`);
  }
  return out;
}

async function buildStore(task: NodeTask, config: Config): Promise<{ store: CounterStore; failover: FailoverStore | null }> {
  const rate = slidingWindow(RATE_UNIT_MS);
  const log = pino({ level: 'silent' });
  if (task.store === 'memory') return { store: new MemoryStore({ rate, maxEntries: 2 * task.addresses + 1000 }), failover: null };
  if (task.store === 'daemon') {
    const opened = await openStore(config, rate, systemClock, log);
    return { store: opened.store, failover: opened.fleet?.failover ?? null };
  }
  const client = createRedisClient(config, 'store');
  client.on('error', () => {});
  if (!(await connectWithin(client, 3000))) throw new Error(`redis at ${task.redisUrl} not reachable`);
  return { store: new RedisStore(client, { rate, node: task.node, prefix: config.store.redis.prefix, leaseMs: config.store.lease }), failover: null };
}

async function run(task: NodeTask): Promise<void> {
  const send = (m: FromNode) => process.send?.(m);
  const config = benchConfig(task.redisUrl, task.node);
  const { store, failover } = await buildStore(task, config);
  const gate = Gatekeeper.open({ store, rules: config.rules, countries: NO_COUNTRIES, clock: systemClock, log: pino({ level: 'silent' }), rateUnitMs: RATE_UNIT_MS, statusUpdateMs: 3_600_000 });
  // One owner for the node, as a guard-proxy listener has.
  const owner = gate.createOwner(`bench ${task.node}`);
  const pool = addressPool(task.addresses, task.seed);
  const draw = rng(task.seed * 7919 + task.index + 1);
  const go = await new Promise<ToNode>((resolve) => {
    process.once('message', (m: ToNode) => resolve(m));
    send({ type: 'ready' });
  });

  const hist = new Histogram();
  const refused: Record<string, number> = {};
  let decisions = 0;
  const failovers0 = failover?.status().failovers ?? 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const started = Date.now();
      if (started >= go.to) return;
      const address = pool[draw() % pool.length] as string;
      const t0 = process.hrtime.bigint();
      const a = await gate.admit('imap', address, owner);
      await gate.leave(a.keys, owner);
      const ns = Number(process.hrtime.bigint() - t0);
      if (started < go.from || Date.now() >= go.to) continue;
      decisions++;
      hist.recordNs(ns);
      if (a.decision.action !== 'allow') {
        const rule = a.decision.refusal?.rule ?? 'unknown';
        refused[rule] = (refused[rule] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: task.inflight }, worker));
  const result: NodeResult = {
    node: task.node,
    decisions,
    seconds: (go.to - go.from) / 1000,
    latency: hist.summary(),
    refused,
    failovers: (failover?.status().failovers ?? 0) - failovers0,
  };
  send({ type: 'result', result });
  await gate.stop();
}

if (process.send !== undefined && process.argv[2] !== undefined) {
  run(JSON.parse(process.argv[2]) as NodeTask).then(
    () => process.disconnect?.(),
    (err: unknown) => {
      process.send?.({ type: 'error', message: (err as Error).stack ?? String(err) } satisfies FromNode);
      process.exitCode = 1;
      process.disconnect?.();
    },
  );
}
