/**
 * The Redis side of bench/fleet: what the suite reads from the server (its
 * pid, per-command statistics, memory) and redis-benchmark's own EVALSHA
 * figure against the same server.
 */
import { execFile } from 'node:child_process';
import type { Redis } from 'ioredis';
import { ACQUIRE } from '../../src/store/redis-scripts.js';
import { cpuTimeUs, machineBusyUs, selfAndChildrenCpuUs } from '../anvil/proc.js';

export const REDIS_BENCHMARK = '/usr/bin/redis-benchmark';

/** `INFO section` as field → value. */
export async function info(redis: Redis, section: string): Promise<Map<string, string>> {
  const text = await redis.info(section);
  const out = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

export interface CommandStat {
  readonly calls: number;
  /** Time Redis spent executing the command (not reading or writing it), µs. */
  readonly usec: number;
}

/** INFO commandstats: command → calls and µs. Commands a script runs are counted too, under their own names. */
export async function commandStats(redis: Redis): Promise<Map<string, CommandStat>> {
  const out = new Map<string, CommandStat>();
  for (const [field, value] of await info(redis, 'commandstats')) {
    const calls = /calls=(\d+)/.exec(value);
    const usec = /usec=(\d+)/.exec(value);
    if (calls && usec) out.set(field.replace(/^cmdstat_/, ''), { calls: Number(calls[1]), usec: Number(usec[1]) });
  }
  return out;
}

/** What changed between two commandstats readings, commands with no calls left out. */
export function statsDelta(before: Map<string, CommandStat>, after: Map<string, CommandStat>): Map<string, CommandStat> {
  const out = new Map<string, CommandStat>();
  for (const [cmd, a] of after) {
    const b = before.get(cmd) ?? { calls: 0, usec: 0 };
    if (a.calls > b.calls) out.set(cmd, { calls: a.calls - b.calls, usec: a.usec - b.usec });
  }
  return out;
}

/** A CPU and commandstats reading of the server, taken at the edges of a measured window. */
export interface ServerMark {
  readonly cpuUs: number;
  readonly stats: Map<string, CommandStat>;
}

export async function mark(redis: Redis, pid: number): Promise<ServerMark> {
  return { cpuUs: cpuTimeUs(pid), stats: await commandStats(redis) };
}

export interface MemoryReading {
  readonly usedBytes: number;
  readonly keys: number;
}

export async function memory(redis: Redis): Promise<MemoryReading> {
  const m = await info(redis, 'memory');
  return { usedBytes: Number(m.get('used_memory')), keys: await redis.dbsize() };
}

/** MEMORY USAGE of up to `n` keys matching `match`, found by SCAN: the mean and the number measured. */
export async function sampleKeyBytes(redis: Redis, match: string, n: number): Promise<{ meanBytes: number; fields: number; sampled: number }> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0' && keys.length < n);
  let bytes = 0;
  let fields = 0;
  const some = keys.slice(0, n);
  for (const key of some) {
    bytes += Number(await redis.memory('USAGE', key, 'SAMPLES', '0'));
    fields += (await redis.type(key)) === 'hash' ? await redis.hlen(key) : 0;
  }
  return { meanBytes: some.length === 0 ? NaN : bytes / some.length, fields: some.length === 0 ? NaN : fields / some.length, sampled: some.length };
}

/** Bytes and members of every key matching `match` (the nodes' key sets are few). */
export async function setsBytes(redis: Redis, match: string): Promise<{ keys: number; bytes: number; members: number }> {
  let cursor = '0';
  let keys = 0;
  let bytes = 0;
  let members = 0;
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    cursor = next;
    for (const key of found) {
      keys++;
      bytes += Number(await redis.memory('USAGE', key, 'SAMPLES', '0'));
      members += await redis.scard(key);
    }
  } while (cursor !== '0');
  return { keys, bytes, members };
}

export interface RedisBenchmarkResult {
  readonly script: string;
  readonly command: string;
  readonly requests: number;
  readonly perSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Redis CPU per call over the run, µs (from /proc: execution and I/O). */
  readonly serverCpuUsPerCall: number;
  /** Redis CPU share of one core over the run. */
  readonly serverCore: number;
  /** Time inside EVALSHA per call (commandstats), µs. */
  readonly execUsPerCall: number;
  /** Share of a core taken by processes other than Redis, redis-benchmark and this one: noise. */
  readonly cpu: { readonly otherShare: number };
}

/** Two keys touched per call, as a decision touches its address and its /24. */
export const TRIVIAL_SCRIPT = `for i, k in ipairs(KEYS) do redis.call('HINCRBY', k, 'n', 1); redis.call('PEXPIRE', k, ARGV[1]) end return 1`;

export interface ScriptCase {
  readonly name: string;
  readonly lua: string;
  /** ARGV after the two keys. */
  readonly args: readonly string[];
}

/** Doorman's own ACQUIRE with the arguments a decision sends (now, node, lease, algo, unit, ttl), and the trivial floor. */
export function scriptCases(now: number, leaseMs: number, unitMs: number): ScriptCase[] {
  const ttl = Math.max(leaseMs, 2 * unitMs) + 5_000;
  return [
    { name: 'ACQUIRE (src/store/redis-scripts.ts)', lua: ACQUIRE, args: [String(now), 'rb', String(leaseMs), 's', String(unitMs), String(ttl)] },
    { name: 'HINCRBY + PEXPIRE on each key', lua: TRIVIAL_SCRIPT, args: [String(ttl)] },
  ];
}

/**
 * SCRIPT LOAD, then redis-benchmark's EVALSHA with `clients` connections, one
 * request in flight each (-P 1), keys spread over `keyspace` random values
 * per key (-r). Under `taskset -c cpu` when cpu is not null.
 */
export async function redisBenchmark(redis: Redis, pid: number, port: number, c: ScriptCase, requests: number, clients: number, keyspace: number, cpu: number | null): Promise<RedisBenchmarkResult> {
  const sha = (await redis.script('LOAD', c.lua)) as string;
  const argv = ['-h', '127.0.0.1', '-p', String(port), '-n', String(requests), '-c', String(clients), '-P', '1', '-r', String(keyspace), '--csv', 'EVALSHA', sha, '2', 'rb:k:imap:__rand_int__', 'rb:k:imap:p__rand_int__', ...c.args];
  const [file, args] = cpu === null ? [REDIS_BENCHMARK, argv] : ['taskset', ['-c', String(cpu), REDIS_BENCHMARK, ...argv]];
  const before = await mark(redis, pid);
  const own0 = selfAndChildrenCpuUs();
  const busy0 = machineBusyUs();
  const t0 = performance.now();
  const out = await new Promise<string>((resolve, reject) =>
    execFile(file, args, { timeout: 300_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`redis-benchmark: ${err.message} ${stderr}`)) : resolve(stdout))),
  );
  const wallUs = (performance.now() - t0) * 1000;
  const busy = machineBusyUs() - busy0;
  const own = selfAndChildrenCpuUs() - own0;
  const after = await mark(redis, pid);
  const row = out.trim().split('\n').find((l) => l.startsWith('"EVALSHA'));
  if (row === undefined) throw new Error(`redis-benchmark printed no EVALSHA row: ${out.slice(0, 500)}`);
  const cols = row.split('","').map((s) => s.replace(/"/g, ''));
  const evalsha = statsDelta(before.stats, after.stats).get('evalsha') ?? { calls: 0, usec: 0 };
  return {
    script: c.name,
    command: `redis-benchmark ${argv.join(' ').replace(sha, '<sha>').replace(/ --csv EVALSHA/, ' EVALSHA')}`,
    requests,
    perSec: Number(cols[1]),
    p50Ms: Number(cols[4]),
    p99Ms: Number(cols[6]),
    serverCpuUsPerCall: (after.cpuUs - before.cpuUs) / requests,
    serverCore: (after.cpuUs - before.cpuUs) / wallUs,
    execUsPerCall: evalsha.calls === 0 ? NaN : evalsha.usec / evalsha.calls,
    cpu: { otherShare: Math.max(0, busy - own - (after.cpuUs - before.cpuUs)) / wallUs },
  };
}
