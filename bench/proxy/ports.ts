/**
 * Readiness by connecting (Doorman at log level warn says nothing when it
 * is up), and the file-descriptor limit that caps how many connections one
 * process can hold open.
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const PROBE_EVERY_MS = 50;

/** Resolves when 127.0.0.1:port accepts a connection (closed at once); rejects after timeoutMs or on abort. */
export async function waitForPort(port: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (signal?.aborted) throw new Error(`stopped waiting for port ${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(PROBE_EVERY_MS);
  }
}

/**
 * This process's hard limit on open files (children inherit it). Raising it
 * needs CAP_SYS_RESOURCE; where that is missing (containers), a proxy holding
 * N connections needs 2N descriptors below this limit.
 */
export function fdHardLimit(): number {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'latin1'));
  if (m === null || m[1] === 'unlimited') return Number.MAX_SAFE_INTEGER;
  return Number(m[1]);
}
