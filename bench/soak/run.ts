/**
 * `npm run soak`: ten minutes of mixed traffic against a real Doorman, then
 * the check that every count is back to zero and memory did not grow (see
 * ./soak.ts). Prints a markdown report, writes it raw to
 * bench/results/soak-<timestamp>.json, and exits 1 if anything leaked, the
 * RSS grew past the limit, the traffic saw an unexpected answer or the
 * daemon logged an error.
 *
 * A command of its own rather than a suite of bench/run.ts: it is a
 * pass/fail check, and `npm run bench` should not gain ten minutes.
 *
 * Settings (environment):
 *   SOAK_SECONDS          traffic time, warm-up included (default 600)
 *   SOAK_WARMUP_SECONDS   before the reference sample (default 60)
 *   SOAK_SAMPLE_SECONDS   between samples (default 10)
 *   SOAK_ANVIL_CLIENTS    persistent anvil clients (default 4)
 *   SOAK_POLICY_CLIENTS   persistent policy clients (default 2)
 *   SOAK_PROXY_WORKERS    proxy session loops (default 8)
 *   SOAK_PAUSE_MS         mean pause between one loop's steps (default 10)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { envInt } from '../env.js';
import { formatReport, runSoak, type SoakOptions } from './soak.js';

/** dist/bench/soak/run.js → the repository root. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function soakOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): SoakOptions {
  const seconds = envInt('SOAK_SECONDS', 600, 5, 86_400, env);
  return {
    seconds,
    warmupSeconds: envInt('SOAK_WARMUP_SECONDS', Math.min(60, Math.floor(seconds / 4)), 1, seconds - 1, env),
    sampleSeconds: envInt('SOAK_SAMPLE_SECONDS', 10, 1, 3600, env),
    anvilClients: envInt('SOAK_ANVIL_CLIENTS', 4, 0, 1000, env),
    policyClients: envInt('SOAK_POLICY_CLIENTS', 2, 0, 1000, env),
    proxyWorkers: envInt('SOAK_PROXY_WORKERS', 8, 0, 200, env),
    pauseMs: envInt('SOAK_PAUSE_MS', 10, 0, 10_000, env),
    perAddressLimit: 3,
  };
}

async function main(): Promise<number> {
  const o = { ...soakOptionsFromEnv(), progress: (l: string) => process.stderr.write(`${l}\n`) };
  const report = await runSoak(o);
  const text = formatReport(report, o);
  process.stdout.write(`${text}\n`);
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `soak-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ options: { ...o, progress: undefined }, report }, null, 2)}\n`);
  process.stderr.write(`soak: raw figures in ${file}\n`);
  return report.failures.length === 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} catch (err) {
  process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
}
