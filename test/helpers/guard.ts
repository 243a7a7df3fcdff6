/**
 * Helpers for the guard proxy's integration tests: Doorman started
 * in-process (so a test can kick, read the registry and the engine's counts),
 * a poll with a deadline, and an external client program (curl, swaks) run
 * without blocking the event loop — the proxy lives in the test's own
 * process, so a synchronous child would starve it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon, type DaemonDeps } from '../../src/main.js';
import { memoryLogger } from './log.js';
import { isolated } from './state.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Doorman with the given `services`, no anvil, debug logs kept in `lines`; stopped after the test. */
export async function startGuard(t: TestContext, services: Record<string, unknown>, deps: DaemonDeps = {}): Promise<{ daemon: Daemon; lines: Array<Record<string, unknown>> }> {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-guard-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = parseConfig({ anvil: { enabled: false }, ...isolated(dir), services }, 'test');
  const { log, lines } = memoryLogger();
  const daemon = await startDaemon(cfg, log, deps);
  t.after(() => daemon.stop());
  return { daemon, lines };
}

/** The live count Doorman holds for `key` (`service:address`). */
export async function countOf(daemon: Daemon, key: string): Promise<number> {
  return (await daemon.gate.lookup(key)).count;
}

/** Polls `probe` every 20 ms until it returns true; rejects with `what` after timeoutMs. */
export async function waitUntil(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`still not true after ${timeoutMs} ms: ${what}`);
    await sleep(20);
  }
}

/** Polls `get` until `ok` holds and returns that value; fails with the last value seen after `timeoutMs` (bounds a failure, measures nothing). */
export async function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

export interface RunResult {
  /** The exit code; null when killed (the timeout). */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a program with a deadline; never rejects on a non-zero exit, the test judges it. */
export function run(cmd: string, args: readonly string[], timeoutMs = 10_000): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr: err && code === null ? `${stderr}\n(${err.message})` : stderr, ms: Date.now() - started });
    });
  });
}

/** The first of `paths` that is missing, for a skip banner. */
export function missingProgram(...paths: string[]): string | undefined {
  return paths.find((p) => !existsSync(p));
}

/** Prints the loud banner for a skipped file: never a silent skip. */
export { skipBanner } from './skip.js';
