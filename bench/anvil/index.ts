/**
 * The anvil benchmark: in one run, the same generator drives a fresh Doorman
 * and then a fresh private Postfix anvil through the same workloads, prints a
 * table with Doorman/Postfix ratios and the pass/miss of Doorman's aims, and
 * writes the raw figures to bench/results/anvil-<timestamp>.json.
 *
 * Settings (environment):
 *   BENCH_DURATION_S          each hot-address run (default 10)
 *   BENCH_WARMUP_S            hot-address warm-up before measuring (default 2)
 *   BENCH_CLIENTS             concurrent clients (default 64)
 *   BENCH_FRESH_TARGET        distinct clients for the new-client run (default 1000000)
 *   BENCH_FRESH_CAP_S         time cap of Doorman's new-client run (default 90)
 *   BENCH_POSTFIX_FRESH_CAP_S time cap of Postfix's (default 50: under
 *                             anvil_rate_time_unit, so none of its entries expire
 *                             before the memory reading)
 *   BENCH_PACED_RATE          offered load of the paced run, req/s (default 40000)
 *   BENCH_SERVERS             doorman,postfix (default both)
 *   BENCH_PIN                 0 to not pin server to CPU 1 and generator to CPU 0
 *   BENCH_PIN_HELPERS         0 to leave Postfix's master unpinned (default: on
 *                             CPU 1 with anvil, since it works for every request)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DoormanProcess } from './doorman.js';
import { measureServer, type ServerName, type ServerResult, type SuiteConfig } from './measure.js';
import { PostfixInstance } from './postfix.js';
import { pinToCpu } from './proc.js';
import { buildTable, evaluateAims, formatAims, formatChecks } from './report.js';
import { envNumber } from '../env.js';

const RATE_TIME_UNIT = '60s';
/** Postfix forks anvil on the first connection; it is up well within this. */
const ANVIL_PID_TIMEOUT_MS = 10_000;

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): SuiteConfig {
  const n = (name: string, def: number, min: number, max: number): number => envNumber(name, def, min, max, env);
  const servers = (env.BENCH_SERVERS ?? 'doorman,postfix').split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of servers) if (s !== 'doorman' && s !== 'postfix') throw new Error(`BENCH_SERVERS: unknown server ${s}`);
  return {
    durationMs: n('BENCH_DURATION_S', 10, 0.5, 600) * 1000,
    warmupMs: n('BENCH_WARMUP_S', 2, 0, 60) * 1000,
    clients: Math.round(n('BENCH_CLIENTS', 64, 1, 900)),
    freshTarget: Math.round(n('BENCH_FRESH_TARGET', 1_000_000, 1, 10_000_000)),
    pacedRate: Math.round(n('BENCH_PACED_RATE', 40_000, 100, 1_000_000)),
    freshCapMs: {
      doorman: n('BENCH_FRESH_CAP_S', 90, 1, 600) * 1000,
      postfix: n('BENCH_POSTFIX_FRESH_CAP_S', 50, 1, 600) * 1000,
    },
    pin: env.BENCH_PIN !== '0',
    pinHelpers: env.BENCH_PIN_HELPERS !== '0',
    servers: servers as ServerName[],
  };
}

export async function runAnvilSuite(): Promise<void> {
  const cfg = configFromEnv();
  const progress = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  const started = new Date();
  const generatorPinned = cfg.pin && cpus().length >= 2 && pinToCpu(process.pid, 0);
  if (cfg.pin && !generatorPinned) progress('could not pin (taskset missing or one CPU): running unpinned');
  const pin = cfg.pin && generatorPinned;
  const suiteCfg: SuiteConfig = { ...cfg, pin };

  const results: Partial<Record<ServerName, ServerResult>> = {};
  if (cfg.servers.includes('doorman')) results.doorman = await benchDoorman(suiteCfg, progress);
  if (cfg.servers.includes('postfix')) results.postfix = await benchPostfix(suiteCfg, progress);

  const table = buildTable(results.doorman, results.postfix);
  const aims = evaluateAims(results.doorman, results.postfix);
  const env = {
    date: started.toISOString(),
    node: process.version,
    postfix: postfixVersion(),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    pinned: pin ? { generator: 0, server: 1, helpersWithServer: cfg.pinHelpers } : null,
  };
  const checks = formatChecks(Object.values(results));
  const placement = pin
    ? `generator pinned to CPU 0; server pinned to CPU 1${cfg.pinHelpers ? " (Postfix's master with it)" : " (Postfix's master unpinned)"}`
    : 'nothing pinned';
  process.stdout.write(
    `\n## anvil: Doorman vs Postfix ${env.postfix} anvil (${env.date}, Node ${env.node}, ${env.cpus} CPUs)\n\n` +
      `${table}\n\n` +
      `Server CPU for Postfix is anvil plus master: anvil notifies master before and after every request. ${placement}.\n\n` +
      `### Tracked clients\n\n${checks}\n\n### Aims\n\n${formatAims(aims)}\n\n`,
  );
  for (const r of Object.values(results)) {
    for (const run of [r.hot, r.hot1, r.fresh]) {
      if (run.errors > 0) process.stdout.write(`WARNING: ${r.server}: ${run.errors} errors in a run (first: ${run.firstError})\n`);
    }
    if (!r.sameProcess) process.stdout.write(`WARNING: ${r.server}: the server process changed during the run\n`);
  }

  const dir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}anvil-${started.toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(file, JSON.stringify({ suite: 'anvil', env, config: suiteCfg, results, aims, table }, null, 2) + '\n');
  process.stdout.write(`raw results: ${file}\n`);
}

async function benchDoorman(cfg: SuiteConfig, progress: (m: string) => void): Promise<ServerResult> {
  progress('starting Doorman');
  const d = await DoormanProcess.start({ maxEntries: Math.max(2_000_000, cfg.freshTarget * 2), rateTimeUnit: RATE_TIME_UNIT });
  let result: ServerResult;
  try {
    result = await measureServer('doorman', d.socket, async () => d.pid, [], cfg, progress);
  } catch (err) {
    await d.stop();
    throw err;
  }
  const code = await d.stop();
  result.memory.maxCacheSize = d.maxCacheSize();
  progress(`Doorman stopped (exit ${code}); statistics: max cache size ${result.memory.maxCacheSize ?? 'not logged'}`);
  return result;
}

async function benchPostfix(cfg: SuiteConfig, progress: (m: string) => void): Promise<ServerResult> {
  progress('starting a private Postfix instance');
  const pf = await PostfixInstance.start({ rateTimeUnit: RATE_TIME_UNIT });
  try {
    const anvilPid = async () => {
      const until = Date.now() + ANVIL_PID_TIMEOUT_MS;
      for (;;) {
        const pid = pf.anvilPid();
        if (pid !== null) return pid;
        if (Date.now() > until) throw new Error(`no anvil process under master ${pf.masterPid} after ${ANVIL_PID_TIMEOUT_MS} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    // anvil tells master before and after every request (multi_server's MASTER_STAT_TAKEN / _AVAIL),
    // so master's CPU is part of what each request costs.
    return await measureServer('postfix', pf.socket, anvilPid, [{ name: 'master', pid: pf.masterPid }], cfg, progress);
  } finally {
    pf.stop();
    progress('Postfix stopped');
  }
}

function postfixVersion(): string {
  try {
    return execFileSync('postconf', ['-d', '-h', 'mail_version'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch {
    return 'unknown';
  }
}
