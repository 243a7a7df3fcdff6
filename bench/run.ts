/**
 * `npm run bench` runs every suite; `node dist/bench/run.js anvil` runs one.
 * Each suite starts and stops its own servers; teardown also runs on Ctrl-C
 * and on errors (see ./anvil/teardown.ts).
 */
import { runAnvilSuite } from './anvil/index.js';
import { teardownAll } from './anvil/teardown.js';

const SUITES: Record<string, () => Promise<void>> = {
  anvil: runAnvilSuite,
  geo: async () => (await import('./geo/index.js')).runGeoBench(),
  policy: async () => (await import('./policy/index.js')).runPolicyBench(),
  proxy: async () => (await import('./proxy/index.js')).runProxySuite(),
  admin: async () => (await import('./admin/index.js')).runAdminBench(),
  fleet: async () => (await import('./fleet/index.js')).runFleetSuite(),
  instructions: async () => (await import('./instructions/index.js')).runInstructionsBench(),
  spoe: async () => (await import('./spoe/index.js')).runSpoeSuite(),
};

async function main(argv: string[]): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(`usage: node dist/bench/run.js [${Object.keys(SUITES).join('|')}]...\n(see bench/README.md for the BENCH_* settings)\n`);
    return 0;
  }
  const names = argv.length > 0 ? argv : Object.keys(SUITES);
  const unknown = names.filter((n) => !(n in SUITES));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown suite ${unknown.join(', ')}; known: ${Object.keys(SUITES).join(', ')}\n`);
    return 2;
  }
  for (const name of names) await (SUITES[name] as () => Promise<void>)();
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
} finally {
  teardownAll();
}
