/**
 * Runs the four anvil workloads against one server (Doorman or Postfix's
 * anvil) that is already listening, with the server's CPU and memory read
 * from /proc around each run.
 */
import { anvilCall, ipv4, openAnvil, runLoad, type AnvilConn, type RunOptions, type RunResult } from './loadgen.js';
import { cpuTimeUs, isAlive, machineBusyUs, pinToCpu, rssBytes } from './proc.js';

export const HOT_IDENT = 'smtp:203.0.113.9';
/** 10.0.0.0: new-client idents count up from here, one address per client. */
const FRESH_FIRST_ADDRESS = 0x0a000000;
/** Let the server finish what the last run left (GC, timers) before reading RSS. */
const SETTLE_MS = 2000;

export interface SuiteConfig {
  readonly clients: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly freshTarget: number;
  /** Offered load of the paced run, requests/s over all clients. */
  readonly pacedRate: number;
  readonly freshCapMs: { readonly doorman: number; readonly postfix: number };
  readonly pin: boolean;
  /** Pin helper processes (Postfix's master) with the server; false leaves them free to run on either CPU. */
  readonly pinHelpers: boolean;
  readonly servers: ReadonlyArray<ServerName>;
}

export type ServerName = 'doorman' | 'postfix';

export interface MeasuredRun extends RunResult {
  /** utime + stime over the run of every server process (µs, 10 ms resolution): the server and its helpers. */
  readonly serverCpuUs: number;
  /** The helpers' part of serverCpuUs (Postfix's master, which hears from anvil around every request). */
  readonly helperCpuUs: number;
  readonly serverCpuUsPerRequest: number;
  /** serverCpuUs / wall time: 1.0 is a whole core. */
  readonly serverCpuShare: number;
  /** CPU other processes took during the run (machine busy − server − generator), in cores: noise. */
  readonly otherCpuShare: number;
  /** Once a second: CPU of server, generator and everything else, in cores. */
  readonly samples: CpuSample[];
}

export interface CpuSample {
  readonly atMs: number;
  readonly server: number;
  readonly generator: number;
  readonly other: number;
}

/** How often CPU is sampled during a run: enough to see a stall or a noisy neighbour. */
const SAMPLE_INTERVAL_MS = 1000;

export interface LookupCheck {
  readonly ident: string;
  readonly reply: Record<string, number> | null;
  readonly error: string | null;
}

export interface ServerResult {
  readonly server: ServerName;
  readonly pid: number;
  /** Processes whose CPU counts as the server's besides `pid`. */
  readonly helpers: ReadonlyArray<{ readonly name: string; readonly pid: number }>;
  readonly pinnedToCpu: number | null;
  readonly hot: MeasuredRun;
  readonly hot1: MeasuredRun;
  /** The hot address at a fixed offered load below both servers' capacity. */
  readonly paced: MeasuredRun;
  readonly fresh: MeasuredRun;
  readonly memory: {
    readonly rssBeforeBytes: number;
    readonly rssAfterBytes: number;
    readonly rssAfterSettledBytes: number;
    readonly trackedClients: number;
    readonly bytesPerClient: number;
    /** How the tracked count was checked. */
    readonly lookups: LookupCheck[];
    /** Doorman's `statistics: max cache size N` at SIGTERM (includes the hot ident); filled in after stop. */
    maxCacheSize: number | null;
  };
  /** Same server process from first to last run (Postfix's master could have restarted anvil). */
  readonly sameProcess: boolean;
}

type Progress = (msg: string) => void;

/**
 * Measures one server. `serverPid` is called after the first connection, because
 * Postfix's master forks anvil only then. `helpers` are other processes that
 * work for every request (Postfix's master): their CPU counts as the server's,
 * and they are pinned with it.
 */
export async function measureServer(
  server: ServerName,
  socket: string,
  serverPid: () => Promise<number>,
  helpers: ReadonlyArray<{ readonly name: string; readonly pid: number }>,
  cfg: SuiteConfig,
  progress: Progress,
): Promise<ServerResult> {
  // The control connection stays open throughout: it keeps Postfix's anvil from
  // exiting when idle between runs, and answers the lookups at the end.
  const control = await openAnvil(socket);
  try {
    const pid = await serverPid();
    const toPin = cfg.pinHelpers ? [pid, ...helpers.map((h) => h.pid)] : [pid];
    const pinnedToCpu = cfg.pin && toPin.every((p) => pinToCpu(p, 1)) ? 1 : null;
    const pids = [pid, ...helpers.map((h) => h.pid)];
    const hotShape = { kind: 'hot', ident: HOT_IDENT } as const;

    progress(`${server}: warm-up, ${cfg.clients} clients on one address, ${cfg.warmupMs / 1000} s`);
    await runLoad({ socket, clients: cfg.clients, durationMs: cfg.warmupMs, shape: hotShape });

    progress(`${server}: hot address, ${cfg.clients} clients, ${cfg.durationMs / 1000} s`);
    const hot = await measured(pids, { socket, clients: cfg.clients, durationMs: cfg.durationMs, shape: hotShape });
    progress(`${server}:   ${fmtRate(hot)}`);

    progress(`${server}: hot address, 1 client, ${cfg.durationMs / 1000} s`);
    const hot1 = await measured(pids, { socket, clients: 1, durationMs: cfg.durationMs, shape: hotShape });
    progress(`${server}:   ${fmtRate(hot1)}`);

    progress(`${server}: hot address, ${cfg.clients} clients, paced at ${cfg.pacedRate} req/s, ${cfg.durationMs / 1000} s`);
    const paced = await measured(pids, { socket, clients: cfg.clients, durationMs: cfg.durationMs, shape: hotShape, ratePerSec: cfg.pacedRate });
    progress(`${server}:   ${fmtRate(paced)}`);

    await sleep(SETTLE_MS);
    const rssBeforeBytes = rssBytes(pid);
    const capMs = cfg.freshCapMs[server];
    progress(`${server}: new client every request, ${cfg.clients} clients, until ${cfg.freshTarget} clients or ${capMs / 1000} s`);
    const fresh = await measured(pids, {
      socket,
      clients: cfg.clients,
      durationMs: capMs,
      bucketMs: 100,
      shape: { kind: 'fresh', service: 'smtp', firstAddress: FRESH_FIRST_ADDRESS, maxIdents: cfg.freshTarget },
    });
    progress(`${server}:   ${fmtRate(fresh)}, ${fresh.idents} clients in ${(fresh.wallMs / 1000).toFixed(1)} s`);
    const rssAfterBytes = rssBytes(pid);
    await sleep(SETTLE_MS);
    const rssAfterSettledBytes = rssBytes(pid);

    const lookups: LookupCheck[] = [];
    if (fresh.idents > 0) {
      const middle = `smtp:${ipv4(FRESH_FIRST_ADDRESS + Math.floor(fresh.idents / 2))}`;
      // the last is a control: never sent, so it must read rate=0
      const never = `smtp:${ipv4(FRESH_FIRST_ADDRESS + cfg.freshTarget + 1)}`;
      for (const ident of [fresh.firstIdent, middle, fresh.lastIdent, never]) lookups.push(await lookup(control, ident));
    }
    const trackedClients = fresh.idents;
    return {
      server,
      pid,
      helpers,
      pinnedToCpu,
      hot,
      hot1,
      paced,
      fresh,
      memory: {
        rssBeforeBytes,
        rssAfterBytes,
        rssAfterSettledBytes,
        trackedClients,
        bytesPerClient: trackedClients > 0 ? (rssAfterSettledBytes - rssBeforeBytes) / trackedClients : NaN,
        lookups,
        maxCacheSize: null,
      },
      sameProcess: isAlive(pid) && (await serverPid().catch(() => null)) === pid,
    };
  } finally {
    control.close();
  }
}

/** Runs the load with CPU read around it; pids[0] is the server, the rest its helpers. */
async function measured(pids: number[], opts: RunOptions): Promise<MeasuredRun> {
  const start = cpuSnapshot(pids);
  let last = start;
  const samples: CpuSample[] = [];
  const timer = setInterval(() => {
    try {
      const now = cpuSnapshot(pids);
      samples.push(cpuDelta(start, last, now));
      last = now;
    } catch {
      // the server went away; the run itself reports that
    }
  }, SAMPLE_INTERVAL_MS);
  let run: RunResult;
  try {
    run = await runLoad(opts);
  } finally {
    clearInterval(timer);
  }
  const end = cpuSnapshot(pids);
  const whole = cpuDelta(start, start, end);
  const serverCpuUs = end.server - start.server;
  return {
    ...run,
    serverCpuUs,
    helperCpuUs: end.helpers - start.helpers,
    serverCpuUsPerRequest: run.requests > 0 ? serverCpuUs / run.requests : NaN,
    serverCpuShare: serverCpuUs / (run.wallMs * 1000),
    otherCpuShare: whole.other,
    samples,
  };
}

interface CpuSnapshot {
  readonly atMs: number;
  readonly server: number;
  readonly helpers: number;
  readonly generator: number;
  readonly busy: number;
}

function cpuSnapshot(pids: number[]): CpuSnapshot {
  const g = process.cpuUsage();
  let helpers = 0;
  for (let i = 1; i < pids.length; i++) helpers += cpuTimeUs(pids[i] as number);
  const server = cpuTimeUs(pids[0] as number) + helpers;
  return { atMs: performance.now(), server, helpers, generator: g.user + g.system, busy: machineBusyUs() };
}

function cpuDelta(origin: CpuSnapshot, a: CpuSnapshot, b: CpuSnapshot): CpuSample {
  const us = (b.atMs - a.atMs) * 1000;
  const server = (b.server - a.server) / us;
  const generator = (b.generator - a.generator) / us;
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    atMs: Math.round(b.atMs - origin.atMs),
    server: round(server),
    generator: round(generator),
    other: round(Math.max(0, (b.busy - a.busy) / us - server - generator)),
  };
}

async function lookup(control: AnvilConn, ident: string): Promise<LookupCheck> {
  try {
    return { ident, reply: await anvilCall(control, 'lookup', ident), error: null };
  } catch (err) {
    return { ident, reply: null, error: (err as Error).message };
  }
}

function fmtRate(r: MeasuredRun): string {
  return (
    `${Math.round(r.requestsPerSec)} req/s, p50 ${r.latency.p50Us} µs, p99 ${r.latency.p99Us} µs, ` +
    `server CPU ${r.serverCpuUsPerRequest.toFixed(2)} µs/req (${pct(r.serverCpuShare)}), generator CPU ${pct(r.generatorCpuShare)}, ` +
    `other processes ${pct(r.otherCpuShare)}` +
    (r.helperCpuUs > 0 ? ` (server CPU includes ${pct(r.helperCpuUs / (r.wallMs * 1000))} for helper processes)` : '') +
    (r.errors > 0 ? `, ${r.errors} ERRORS (first: ${r.firstError})` : '')
  );
}

function pct(share: number): string {
  return `${Math.round(share * 100)}%`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
