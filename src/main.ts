/**
 * The composition root: config → store and engine → listeners. Everything is
 * built here and nowhere else, so tests can start a whole daemon in-process.
 */
import type { Logger } from 'pino';
import type { Config } from './config/load.js';
import type { Clock } from './core/clock.js';
import { systemClock } from './core/clock.js';
import { Engine } from './core/engine.js';
import { rateAlgorithm } from './core/rate.js';
import { AnvilServer } from './listeners/anvil-server.js';
import { resolveGid, resolveUid } from './listeners/unix-ids.js';
import { MemoryStore } from './store/memory.js';

export interface Daemon {
  readonly engine: Engine;
  readonly anvil: AnvilServer | null;
  /** Stop accepting, close clients, remove sockets, log final statistics. */
  stop(): Promise<void>;
}

export async function startDaemon(config: Config, log: Logger, clock: Clock = systemClock): Promise<Daemon> {
  const e = config.engine;
  const rate = rateAlgorithm(e.rate_algorithm, e.rate_time_unit);
  const store = new MemoryStore({ rate, maxEntries: e.max_entries });
  const engine = new Engine(store, clock, log, { rateUnitMs: rate.unitMs, statusUpdateMs: e.status_update_time });
  engine.start();

  let anvil: AnvilServer | null = null;
  try {
    if (config.anvil.enabled) {
      const a = config.anvil;
      anvil = new AnvilServer(engine, log, {
        socket: a.socket,
        mode: parseInt(a.socket_mode, 8),
        uid: a.owner === null ? null : resolveUid(a.owner),
        gid: a.group === null ? null : resolveGid(a.group),
        maxClients: a.max_clients,
        requestTimeoutMs: a.request_timeout,
        idleTimeoutMs: a.idle_timeout,
        maxBadRequests: a.max_bad_requests,
      });
      await anvil.listen();
    }
  } catch (err) {
    await engine.stop();
    throw err;
  }

  let stopping: Promise<void> | null = null;
  return {
    engine,
    anvil,
    stop() {
      stopping ??= (async () => {
        await anvil?.close();
        await engine.stop();
      })();
      return stopping;
    },
  };
}
