/**
 * One measured run against one target (the backend directly, Doorman or
 * HAProxy), with the CPU of the proxy, the generator (this process) and the
 * backend read from /proc at the edges of the timed window, and the proxy's
 * RSS around the open-connections test.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { cpus } from 'node:os';
import { childrenNamed, cpuTimeUs, machineBusyUs, rssBytes } from '../anvil/proc.js';
import { closeAll, openIdle, runLoop, transfer, type Direction, type LoopKind, type LoopResult, type TransferResult } from './loadgen.js';

/** `relay`: the bare Node relay (./node-relay.ts), the yardstick. */
export type TargetName = 'direct' | 'doorman' | 'relay' | 'haproxy';

export interface Target {
  readonly name: TargetName;
  /** The proxy's pid; null for the backend measured directly. */
  readonly pid: number | null;
  /** Limit far above any client count. */
  readonly port: number;
  /** Limit 1 per address; null for direct. */
  readonly refusePort: number | null;
}

/** CPU over a window, in µs, and as shares of one core. */
export interface CpuReading {
  readonly proxyUs: number;
  readonly proxyShare: number;
  readonly generatorShare: number;
  readonly backendShare: number;
  /** The kernel's softirq threads: loopback traffic they took over at high rates (bulk), not noise. */
  readonly softirqShare: number;
  /** Machine busy time not taken by proxy, generator, backend or softirq threads: noise. */
  readonly otherShare: number;
}

export interface MeasuredLoop extends LoopResult {
  readonly target: TargetName;
  readonly cpu: CpuReading;
  /** Proxy CPU per session (or refusal), µs; NaN for direct. */
  readonly proxyCpuUsPerOp: number;
}

export interface MeasuredTransfer extends TransferResult {
  readonly target: TargetName;
  readonly cpu: CpuReading;
  /** Proxy CPU per GiB relayed, ms; NaN for direct. */
  readonly proxyCpuMsPerGiB: number;
}

export interface OpenMemory {
  readonly target: TargetName;
  readonly wanted: number;
  readonly opened: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly openMs: number;
  readonly rssBeforeBytes: number;
  readonly rssOpenBytes: number;
  readonly rssAfterCloseBytes: number;
  /** (rssOpen − rssBefore) / opened. */
  readonly bytesPerConnection: number;
}

/** The proxy gets this long to finish what the last run left (GC, closes) before RSS is read. */
const SETTLE_MS = 1000;

/** PID 2 (kthreadd) is the parent of the kernel's threads. */
const KTHREADD = 2;

/** ksoftirqd/N, one per CPU: where the kernel finishes network work it could not do inline. */
const SOFTIRQ_PIDS: readonly number[] = cpus().flatMap((_, i) => childrenNamed(KTHREADD, `ksoftirqd/${i}`));

function softirqUs(): number {
  let us = 0;
  for (const pid of SOFTIRQ_PIDS) {
    try {
      us += cpuTimeUs(pid);
    } catch {
      // not readable here: counted as noise instead
    }
  }
  return us;
}

/** Reads CPU counters at start() and stop(); reading() gives the window's figures. */
class CpuWindow {
  private proxy0 = 0;
  private gen0: NodeJS.CpuUsage = { user: 0, system: 0 };
  private backend0 = 0;
  private busy0 = 0;
  private softirq0 = 0;
  private t0 = 0;
  private result: CpuReading | null = null;

  constructor(
    private readonly proxyPid: number | null,
    private readonly backendPid: number,
  ) {}

  start(): void {
    this.proxy0 = this.proxyPid === null ? 0 : cpuTimeUs(this.proxyPid);
    this.backend0 = cpuTimeUs(this.backendPid);
    this.busy0 = machineBusyUs();
    this.softirq0 = softirqUs();
    this.gen0 = process.cpuUsage();
    this.t0 = performance.now();
  }

  stop(): void {
    const wallUs = (performance.now() - this.t0) * 1000;
    const g = process.cpuUsage(this.gen0);
    const gen = g.user + g.system;
    const proxy = this.proxyPid === null ? 0 : cpuTimeUs(this.proxyPid) - this.proxy0;
    const backend = cpuTimeUs(this.backendPid) - this.backend0;
    const busy = machineBusyUs() - this.busy0;
    const softirq = softirqUs() - this.softirq0;
    this.result = {
      proxyUs: proxy,
      proxyShare: this.proxyPid === null ? NaN : proxy / wallUs,
      generatorShare: gen / wallUs,
      backendShare: backend / wallUs,
      softirqShare: softirq / wallUs,
      otherShare: Math.max(0, busy - proxy - gen - backend - softirq) / wallUs,
    };
  }

  reading(): CpuReading {
    if (this.result === null) throw new Error('CPU window not closed');
    return this.result;
  }
}

export async function measureLoop(t: Target, kind: LoopKind, clients: number, durationMs: number, backendPid: number): Promise<MeasuredLoop> {
  const port = kind === 'session' ? t.port : t.refusePort;
  if (port === null) throw new Error(`${t.name} has no refusal port`);
  const w = new CpuWindow(t.pid, backendPid);
  const r = await runLoop({ port, kind, clients, durationMs, onStart: () => w.start(), onStop: () => w.stop() });
  const cpu = w.reading();
  return { ...r, target: t.name, cpu, proxyCpuUsPerOp: t.pid === null || r.count === 0 ? NaN : cpu.proxyUs / r.count };
}

/** A warm-up: the same loop, nothing kept. */
export async function warmUp(t: Target, kind: LoopKind, clients: number, durationMs: number): Promise<void> {
  const port = kind === 'session' ? t.port : t.refusePort;
  if (port !== null && durationMs > 0) await runLoop({ port, kind, clients, durationMs });
}

export async function measureTransfer(t: Target, bytes: number, direction: Direction, backendPid: number): Promise<MeasuredTransfer> {
  const w = new CpuWindow(t.pid, backendPid);
  const r = await transfer(t.port, bytes, direction, () => w.start(), () => w.stop());
  const cpu = w.reading();
  return { ...r, target: t.name, cpu, proxyCpuMsPerGiB: t.pid === null ? NaN : cpu.proxyUs / 1000 / (bytes / 2 ** 30) };
}

/** The proxy's RSS now, after letting it settle. */
export async function settledRss(pid: number): Promise<number> {
  await sleep(SETTLE_MS);
  return rssBytes(pid);
}

/** RSS of the proxy before, with n idle connections open (each has read the banner), and after they closed. */
export async function measureOpen(t: Target, n: number): Promise<OpenMemory> {
  if (t.pid === null) throw new Error('no proxy process to measure');
  const rssBeforeBytes = await settledRss(t.pid);
  const o = await openIdle(t.port, n);
  let rssOpenBytes: number;
  try {
    rssOpenBytes = await settledRss(t.pid);
  } finally {
    await closeAll(o.sockets);
  }
  const rssAfterCloseBytes = await settledRss(t.pid);
  return {
    target: t.name,
    wanted: n,
    opened: o.sockets.length,
    errors: o.errors,
    firstError: o.firstError,
    openMs: o.ms,
    rssBeforeBytes,
    rssOpenBytes,
    rssAfterCloseBytes,
    bytesPerConnection: o.sockets.length === 0 ? NaN : (rssOpenBytes - rssBeforeBytes) / o.sockets.length,
  };
}
