/**
 * The admin API benchmark: does the API stay responsive while Doorman holds
 * ten thousand live proxied connections?
 *
 * A Doorman (the built CLI, as `npm start` runs it) proxies IMAP to a silent
 * backend in a process of its own (./backend.ts); this process opens the
 * connections, each from its own loopback address (127.1.x.y), waits for
 * every greeting, and then asks the admin API one request at a time over
 * one keep-alive connection, timing each: GET /api/connections?limit=100
 * and GET /api/status (the two), then a full page, a filtered list,
 * /api/top, /metrics. Prints p50 / p99 / max per route and the daemon's RSS,
 * and writes the figures to bench/results/admin-<timestamp>.json.
 *
 * A proxied connection takes two descriptors in Doorman (client and
 * backend), so the connections are capped by the open-files limit Doorman
 * inherits: (limit - FD_RESERVE) / 2. The run says when the cap applies.
 *
 * Settings (environment):
 *   BENCH_ADMIN_CONNS     live connections wanted (default 10000)
 *   BENCH_ADMIN_REQUESTS  timed requests per route for the two main routes (default 500)
 *   BENCH_ADMIN_WARMUP    untimed requests per route first (default 50)
 *   BENCH_ADMIN_NODE_FLAGS more Node flags for Doorman, space-separated (e.g. --cpu-prof --cpu-prof-dir=/tmp/p)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { onTeardown } from '../anvil/teardown.js';
import { envInt } from '../env.js';

/** dist/bench/admin/index.js → the repository root. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const BACKEND = join(ROOT, 'dist', 'bench', 'admin', 'backend.js');
const TOKEN = 'bench-admin-token-0123456789';
/** Descriptors Doorman needs besides two per connection: stdio, epoll, listeners, files, the API's own socket. */
const FD_RESERVE = 60;
/** Connections opened at once while filling: enough to be quick, few enough not to overflow the backlog. */
const OPEN_BATCH = 200;
const READY_TIMEOUT_MS = 20_000;

interface Settings {
  readonly conns: number;
  readonly requests: number;
  readonly warmup: number;
}

/** The soft open-files limit this process (and so its children) has. */
function fdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m === null || m[1] === 'unlimited' ? 1_048_576 : Number(m[1]);
}

/** Spawns `args`, registers its teardown, and resolves with the first stdout line `pick` accepts. */
function spawnAndWait<T>(label: string, args: string[], cwd: string, pick: (line: string) => T | null): Promise<{ child: ChildProcess; value: T; stop: () => void }> {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...DAEMON_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stop = onTeardown(label, () => child.kill('SIGTERM'));
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${label} not ready after ${READY_TIMEOUT_MS} ms; stderr: ${err}`)), READY_TIMEOUT_MS);
    let buf = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const v = pick(line);
        if (v !== null) {
          clearTimeout(t);
          resolve({ child, value: v, stop });
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${label} exited with ${code}; stderr: ${err}`));
    });
  });
}

async function startDoorman(dir: string, backendPort: number): Promise<{ child: ChildProcess; proxyPort: number; adminPort: number; stop: () => void }> {
  const config = join(dir, 'doorman.yaml');
  writeFileSync(
    config,
    [
      'log: { level: info, format: json }',
      'run_as: { allow_root: true }',
      'anvil: { enabled: false }',
      `state: { file: ${join(dir, 'state.json')}, audit_log: ${join(dir, 'audit.log')} }`,
      `admin: { listen: "127.0.0.1:0", token: ${TOKEN} }`,
      'services:',
      '  imap:',
      `    proxy: { listen: ["127.0.0.1:0"], backend: "127.0.0.1:${backendPort}", proxy_protocol: v2, max_connections: 100000 }`,
      '',
    ].join('\n'),
  );
  const ports = { proxy: 0, admin: 0 };
  const extra = (process.env.BENCH_ADMIN_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const r = await spawnAndWait('doorman (admin bench)', [...DAEMON_NODE_FLAGS, ...extra, CLI, 'serve', '--config', config], dir, (line) => {
    if (!line.startsWith('{')) return null;
    const l = JSON.parse(line) as { msg?: string; port?: number };
    if (l.msg === 'proxy listening') ports.proxy = l.port ?? 0;
    if (l.msg?.startsWith('admin API and dashboard on ')) ports.admin = l.port ?? 0;
    return l.msg === 'doorman ready' ? true : null;
  });
  if (ports.proxy === 0 || ports.admin === 0) throw new Error(`doorman did not log its ports (proxy ${ports.proxy}, admin ${ports.admin})`);
  return { child: r.child, proxyPort: ports.proxy, adminPort: ports.admin, stop: r.stop };
}

/** Opens `n` connections through the proxy, each from its own address, and waits for every greeting. */
async function openConnections(port: number, n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  const one = (i: number) =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', localAddress: `127.1.${1 + Math.floor(i / 250)}.${1 + (i % 250)}` });
      s.setTimeout(10_000, () => s.destroy(new Error(`connection ${i}: no greeting within 10 s`)));
      s.once('error', reject);
      s.once('data', () => {
        s.setTimeout(0);
        s.removeAllListeners('error');
        s.on('error', () => {});
        resolve(s);
      });
    });
  for (let i = 0; i < n; i += OPEN_BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + OPEN_BATCH); j++) batch.push(one(j));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

interface Timing {
  readonly route: string;
  readonly requests: number;
  readonly bytes: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
}

/** One request on the keep-alive agent; resolves with its duration in ms and the body size. */
function timed(agent: Agent, port: number, path: string): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = request({ host: '127.0.0.1', port, path, agent, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${path}: HTTP ${res.statusCode}`));
        else resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, bytes });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

async function measure(agent: Agent, port: number, route: string, requests: number, warmup: number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await timed(agent, port, route);
  const ms: number[] = [];
  let bytes = 0;
  for (let i = 0; i < requests; i++) {
    const r = await timed(agent, port, route);
    ms.push(r.ms);
    bytes = r.bytes;
  }
  ms.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { route, requests, bytes, p50_ms: round(quantile(ms, 0.5)), p99_ms: round(quantile(ms, 0.99)), max_ms: round(ms[ms.length - 1] ?? 0) };
}

function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Math.round(Number(m[1]) / 1024);
}

export async function runAdminBench(): Promise<void> {
  const s: Settings = {
    conns: envInt('BENCH_ADMIN_CONNS', 10_000, 1, 1_000_000),
    requests: envInt('BENCH_ADMIN_REQUESTS', 500, 10, 100_000),
    warmup: envInt('BENCH_ADMIN_WARMUP', 50, 0, 10_000),
  };
  const limit = fdLimit();
  const cap = Math.floor((limit - FD_RESERVE) / 2);
  const conns = Math.min(s.conns, cap);
  process.stdout.write(`\n== admin API under ${conns} live proxied connections ==\n`);
  if (conns < s.conns) process.stdout.write(`(capped from ${s.conns}: Doorman needs two descriptors per connection and the open-files limit is ${limit})\n`);
  const dir = mkdtempSync(join(tmpdir(), 'doorman-bench-admin-'));
  const stopDir = onTeardown('admin bench dir', () => rmSync(dir, { recursive: true, force: true }));
  const backend = await spawnAndWait('admin bench backend', [BACKEND], dir, (line) => (line.startsWith('port ') ? Number(line.slice(5)) : null));
  const d = await startDoorman(dir, backend.value);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let sockets: Socket[] = [];
  try {
    const idle = await measure(agent, d.adminPort, '/api/status', 200, s.warmup);
    const t0 = Date.now();
    sockets = await openConnections(d.proxyPort, conns);
    const openS = (Date.now() - t0) / 1000;
    const status = JSON.parse(await new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: d.adminPort, path: '/api/status', agent, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
        let b = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (b += c));
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.end();
    })) as { connections: number };
    if (status.connections !== conns) throw new Error(`Doorman reports ${status.connections} live connections, ${conns} were opened`);
    const rss = rssMiB(d.child.pid);
    const small = Math.max(10, Math.floor(s.requests / 5));
    const timings = [
      await measure(agent, d.adminPort, '/api/connections?limit=100', s.requests, s.warmup),
      await measure(agent, d.adminPort, '/api/status', s.requests, s.warmup),
      await measure(agent, d.adminPort, '/api/connections?offset=5000&limit=1000', small, Math.min(s.warmup, 10)),
      await measure(agent, d.adminPort, '/api/connections?address=127.1.2.0/24&limit=100', small, Math.min(s.warmup, 10)),
      await measure(agent, d.adminPort, '/api/top?by=connections', small, Math.min(s.warmup, 10)),
      await measure(agent, d.adminPort, '/metrics', small, Math.min(s.warmup, 10)),
    ];
    const w = Math.max(...timings.map((x) => x.route.length));
    process.stdout.write(`opened ${conns} connections in ${openS.toFixed(1)} s; Doorman RSS ${rss} MiB\n`);
    process.stdout.write(`idle baseline GET /api/status: p50 ${idle.p50_ms} ms, p99 ${idle.p99_ms} ms\n\n`);
    process.stdout.write(`${'route'.padEnd(w)}  requests   p50 ms   p99 ms   max ms   body bytes\n`);
    for (const x of timings) {
      process.stdout.write(`${x.route.padEnd(w)}  ${String(x.requests).padStart(8)} ${x.p50_ms.toFixed(3).padStart(8)} ${x.p99_ms.toFixed(3).padStart(8)} ${x.max_ms.toFixed(3).padStart(8)} ${String(x.bytes).padStart(12)}\n`);
    }
    const resultsDir = join(ROOT, 'bench', 'results');
    mkdirSync(resultsDir, { recursive: true });
    const file = join(resultsDir, `admin-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify({ node: process.version, connections: conns, wanted: s.conns, fd_limit: limit, open_s: openS, doorman_rss_mib: rss, idle_status: idle, timings }, null, 1)}\n`);
    process.stdout.write(`\nwritten to ${file}\n`);
  } finally {
    for (const sock of sockets) sock.destroy();
    agent.destroy();
    d.stop();
    backend.stop();
    stopDir();
  }
}
