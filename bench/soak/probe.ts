/**
 * What the soak reads from the daemon: its RSS from /proc/PID/status, and
 * through the admin API /api/status, /metrics, /api/clients, /api/counts and
 * /api/connections; and the zero check after the traffic has stopped.
 */
import { readFileSync } from 'node:fs';

/** Each admin request's deadline: the API answers in about a millisecond (BENCHMARKS.md). */
const ADMIN_TIMEOUT_MS = 10_000;

export class AdminApi {
  readonly base: string;

  constructor(base: string) {
    this.base = base.replace(/\/$/, '');
  }

  async get<T>(path: string): Promise<T> {
    const res = await fetch(this.base + path, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    return (path === '/metrics' ? await res.text() : await res.json()) as T;
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    const res = await fetch(this.base + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
    });
    if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }
}

export interface Status {
  connections: number;
  services: Record<string, { connections: number }>;
  engine: { entries: number };
}

/** Prometheus text → `name{labels}` → value (the last wins; labels as printed). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

/** CPU time `pid` has used (user + system), in seconds, from /proc/PID/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces), from the last ')': state is field 3, utime 14, stime 15.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
}

/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS = 100;

/** VmRSS and VmHWM of `pid`, in bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

export interface Sample {
  /** Seconds since the traffic started. */
  readonly t: number;
  readonly phase: 'baseline' | 'warm' | 'run' | 'end';
  readonly rss: number;
  /** CPU seconds the daemon has used so far. */
  readonly cpu: number;
  readonly heapUsed: number;
  readonly openFds: number;
  readonly connections: number;
  readonly engineEntries: number;
  readonly eventLoopLagP99: number;
}

export async function sample(api: AdminApi, pid: number, t: number, phase: Sample['phase']): Promise<Sample> {
  const [status, metricsText] = await Promise.all([api.get<Status>('/api/status'), api.get<string>('/metrics')]);
  const m = parseMetrics(metricsText);
  return {
    t,
    phase,
    rss: memoryOf(pid).rss,
    cpu: cpuSecondsOf(pid),
    heapUsed: m.get('doorman_nodejs_heap_size_used_bytes') ?? NaN,
    openFds: m.get('doorman_process_open_fds') ?? NaN,
    connections: status.connections,
    engineEntries: status.engine.entries,
    eventLoopLagP99: m.get('doorman_nodejs_eventloop_lag_p99_seconds') ?? NaN,
  };
}

export interface Leak {
  readonly what: string;
  readonly value: number;
}

/**
 * Every count that must be zero once the traffic has stopped and every
 * client has closed, with its value: the live total and each service's, the
 * registry's list, each doorman_connections gauge, the engine's busiest
 * client by count (a complete scan), and `keys` one by one.
 */
export async function leftovers(api: AdminApi, keys: readonly string[]): Promise<Leak[]> {
  const status = await api.get<Status>('/api/status');
  const out: Leak[] = [{ what: '/api/status connections', value: status.connections }];
  for (const [name, s] of Object.entries(status.services)) out.push({ what: `/api/status services.${name}.connections`, value: s.connections });
  const list = await api.get<{ total: number }>('/api/connections?limit=1');
  out.push({ what: '/api/connections total', value: list.total });
  const m = parseMetrics(await api.get<string>('/metrics'));
  for (const [k, v] of m) if (k.startsWith('doorman_connections{')) out.push({ what: k, value: v });
  const clients = await api.get<{ complete: boolean; scanned: number; items: Array<{ key: string; count: number }> }>('/api/clients?by=count&limit=100');
  const busy = clients.items.filter((c) => c.count > 0);
  out.push({ what: `engine keys with count > 0 (/api/clients?by=count, ${clients.scanned} keys scanned${clients.complete ? '' : ', INCOMPLETE'})`, value: clients.complete ? busy.length : Math.max(1, busy.length) });
  let held = 0;
  for (const key of keys) {
    const c = await api.get<{ count: number }>(`/api/counts?key=${encodeURIComponent(key)}`);
    if (c.count !== 0) held++;
  }
  out.push({ what: `keys used by the soak with count > 0 (/api/counts, ${keys.length} checked)`, value: held });
  return out;
}
