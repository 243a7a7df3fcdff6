/**
 * bench/policy: Doorman's policy services under load.
 *
 * - Postfix policy delegation: N persistent TCP connections, each sending one
 *   request and waiting for its action (smtpd sends one at a time per
 *   connection), with 1 and with 64 connections. Requests alternate CONNECT
 *   and RCPT from a pool of public client addresses, so each decision does a
 *   country lookup, reads or counts the table and evaluates the rules.
 * - Dovecot auth policy: POST ?command=allow over keep-alive HTTP, 64
 *   concurrent requests.
 *
 * Settings: BENCH_DURATION_S (default 10), BENCH_CLIENTS (default 64).
 * Server pinned to CPU 1, generator to CPU 0, as in bench/anvil.
 */
import { Agent, request } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DoormanProcess } from '../anvil/doorman.js';
import { Histogram, type LatencySummary } from '../anvil/histogram.js';
import { cpuTimeUs, pinToCpu } from '../anvil/proc.js';
import { freePort } from '../../test/helpers/postfix.js';

const KEY = 'bench-policy-key-0123';

interface Result {
  readonly name: string;
  readonly clients: number;
  readonly requestsPerSec: number;
  readonly latency: LatencySummary;
  readonly serverCpuUsPerRequest: number;
  readonly errors: number;
}

/** 4,096 public addresses spread over many networks, fixed. */
function addresses(): string[] {
  const out: string[] = [];
  let x = 0x9e3779b9;
  while (out.length < 4096) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const a = 1 + (x >>> 24) % 222;
    if (a === 10 || a === 127 || a === 100 || a === 169 || a === 172 || a === 192 || a === 198 || a === 203) continue;
    out.push(`${a}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${(x & 254) + 1}`);
  }
  return out;
}

export async function postfixLoad(target: number | string, clients: number, durationMs: number, pid: number): Promise<Result> {
  const addrs = addresses();
  const hist = new Histogram();
  let requests = 0;
  let errors = 0;
  let n = 0;
  const deadline = Date.now() + durationMs;
  const cpu0 = cpuTimeUs(pid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, () => new Promise<void>((resolve) => {
      const s = typeof target === 'number' ? connect(target, '127.0.0.1') : connect(target);
      let sent = 0n;
      let buf = '';
      const next = () => {
        if (Date.now() >= deadline) {
          s.end();
          return resolve();
        }
        const i = n++;
        const state = i % 2 === 0 ? 'CONNECT' : 'RCPT';
        const addr = addrs[i % addrs.length] as string;
        sent = process.hrtime.bigint();
        s.write(`request=smtpd_access_policy\nprotocol_state=${state}\nprotocol_name=ESMTP\nclient_address=${addr}\nclient_name=unknown\nrecipient=user@example.org\nsasl_username=\npolicy_context=\n\n`);
      };
      s.setEncoding('latin1');
      s.on('connect', next);
      s.on('data', (d: string) => {
        buf += d;
        if (!buf.endsWith('\n\n')) return;
        hist.recordNs(Number(process.hrtime.bigint() - sent));
        if (!buf.startsWith('action=')) errors++;
        buf = '';
        requests++;
        next();
      });
      s.on('error', () => {
        errors++;
        resolve();
      });
    })),
  );
  const wall = (performance.now() - t0) / 1000;
  return { name: `Postfix policy over ${typeof target === 'number' ? 'TCP' : 'a UNIX socket'}`, clients, requestsPerSec: requests / wall, latency: hist.summary(), serverCpuUsPerRequest: (cpuTimeUs(pid) - cpu0) / requests, errors };
}

export async function dovecotLoad(port: number, clients: number, durationMs: number, pid: number): Promise<Result> {
  const addrs = addresses();
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const hist = new Histogram();
  let requests = 0;
  let errors = 0;
  let n = 0;
  const deadline = Date.now() + durationMs;
  const cpu0 = cpuTimeUs(pid);
  const t0 = performance.now();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const i = n++;
      const body = JSON.stringify({ device_id: '', login: `user${i % 500}`, protocol: 'imap', pwhash: '0dcd', remote: addrs[i % addrs.length], session_id: `s${i}`, tls: false });
      const sent = process.hrtime.bigint();
      const req = request(
        { host: '127.0.0.1', port, path: '/policy?command=allow', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-api-key': KEY } },
        (res) => {
          res.resume();
          res.on('end', () => {
            hist.recordNs(Number(process.hrtime.bigint() - sent));
            if (res.statusCode !== 200) errors++;
            requests++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < deadline) await one();
    }),
  );
  agent.destroy();
  const wall = (performance.now() - t0) / 1000;
  return { name: 'Dovecot policy (HTTP)', clients, requestsPerSec: requests / wall, latency: hist.summary(), serverCpuUsPerRequest: (cpuTimeUs(pid) - cpu0) / requests, errors };
}

export async function runPolicyBench(): Promise<void> {
  const durationMs = Number(process.env.BENCH_DURATION_S ?? 10) * 1000;
  const clients = Number(process.env.BENCH_CLIENTS ?? 64);
  const [pport, dport] = [await freePort(), await freePort()];
  const unixPath = join(mkdtempSync(join(tmpdir(), 'doorman-policy-bench-')), 'policy');
  const d = await DoormanProcess.start({
    maxEntries: 1_000_000,
    rateTimeUnit: '60s',
    extraYaml: [
      `postfix_policy: { listen: ["127.0.0.1:${pport}", "${unixPath}"] }`,
      `dovecot_policy: { listen: "127.0.0.1:${dport}", api_key: ${KEY} }`,
      'services:',
      '  smtp: { limits: { recipient_rate: 1000000000, connections_per_address: 1000000, connection_rate: 1000000000 }, countries: { connect: { deny: [KP] } } }',
      '  imap: { limits: { auth_rate: 1000000000, auth_failure_rate: 1000 }, countries: { auth: { deny: [KP] } } }',
    ],
  });
  try {
    pinToCpu(process.pid, 0);
    pinToCpu(d.pid, 1);
    process.stdout.write('bench policy: warm-up\n');
    await postfixLoad(pport, clients, 1000, d.pid);
    await dovecotLoad(dport, clients, 1000, d.pid);
    const results = [
      await postfixLoad(pport, 1, durationMs, d.pid),
      await postfixLoad(pport, clients, durationMs, d.pid),
      await postfixLoad(unixPath, 1, durationMs, d.pid),
      await postfixLoad(unixPath, clients, durationMs, d.pid),
      await dovecotLoad(dport, 1, durationMs, d.pid),
      await dovecotLoad(dport, clients, durationMs, d.pid),
    ];
    const rows = results.map(
      (r) =>
        `| ${r.name} | ${r.clients} | ${Math.round(r.requestsPerSec).toLocaleString('en-US')} | ${r.latency.p50Us} µs | ${r.latency.p99Us} µs | ${r.serverCpuUsPerRequest.toFixed(2)} µs | ${r.errors} |`,
    );
    process.stdout.write(
      ['', '| Service | Connections | Decisions/s | p50 | p99 | Server CPU per decision | Errors |', '|---|---:|---:|---:|---:|---:|---:|', ...rows, ''].join('\n') + '\n',
    );
    for (const pf of [results[1], results[3]] as Result[]) {
      process.stdout.write(
        `aim (${pf.name}): over 100,000 policy decisions/s at ${clients} connections: ${pf.requestsPerSec > 100_000 ? 'pass' : 'MISS'} (${Math.round(pf.requestsPerSec)}); ` +
          `p99 under 1 ms: ${pf.latency.p99Us < 1000 ? 'pass' : 'MISS'} (${pf.latency.p99Us} µs)\n`,
      );
    }
  } finally {
    await d.stop();
  }
}
