/**
 * Loading a build's modules by path, for the instruction benchmarks, which
 * drive this checkout's build or an older one (BENCH_OTHER) through the
 * same script: a module that moved is looked for at each of its paths.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Mod = Record<string, any>;

/** `root`/dist/src/`path`, imported. */
export async function load(root: string, path: string): Promise<Mod> {
  return (await import(pathToFileURL(join(root, 'dist', 'src', path)).href)) as Mod;
}

/** The first of `paths` that the build has (core/rate.js became store/rate.js). */
export async function loadMoved(root: string, ...paths: string[]): Promise<Mod> {
  for (const path of paths) {
    try {
      return await load(root, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    }
  }
  throw new Error(`none of ${paths.join(', ')} in ${root}/dist/src`);
}

/**
 * The gatekeeper both workloads drive, built from `root`'s own classes: an
 * engine over a memory store of a million entries, one smtp service with a
 * deny-country rule and limits set high enough never to refuse, every
 * address in Germany, a clock that does not move.
 */
export async function benchGate(root: string): Promise<{ engine: Mod; gate: Mod; clock: Mod }> {
  const { MemoryStore } = await load(root, 'store/memory.js');
  const { Engine } = await load(root, 'core/engine.js');
  const { Gatekeeper } = await load(root, 'core/gate.js');
  const { BanList } = await load(root, 'core/bans.js');
  const { Rules } = await load(root, 'core/rules.js');
  const { slidingWindow } = await loadMoved(root, 'store/rate.js', 'core/rate.js');
  const { serviceSchema } = await load(root, 'config/rules-schema.js');
  const { FakeClock } = await load(root, 'core/clock.js');
  const quiet = { info() {}, warn() {}, error() {}, debug() {}, isLevelEnabled: () => false };
  const clock = new FakeClock();
  const rate = slidingWindow(60_000);
  const engine = new Engine(new MemoryStore({ rate, maxEntries: 1_000_000 }), clock, quiet, { rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  const service = serviceSchema.parse({ limits: { connections_per_address: 1000, connection_rate: 100_000, recipient_rate: 100_000 }, countries: { connect: { deny: ['KP'] } } });
  const rules = Rules.compile({ services: { smtp: service }, exceptions: [], overrides: [] }, 'bench');
  const gate = new Gatekeeper(engine, rules, new BanList(), { country: () => 'DE' }, clock, 60_000);
  return { engine, gate, clock };
}
