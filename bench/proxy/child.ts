/**
 * A helper process of the proxy suite (the backend, the bare Node relay):
 * spawned with stdin as its leash (it exits when stdin closes, so it cannot
 * outlive the benchmark), killed on teardown, and ready when it has printed
 * one JSON line on stdout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { onTeardown } from '../anvil/teardown.js';

const START_TIMEOUT_MS = 10_000;

export interface Spawned<T> {
  readonly child: ChildProcess;
  readonly ready: T;
  /** Kills the child (idempotent) and forgets its teardown. */
  readonly unregister: () => void;
}

export async function spawnHelper<T>(what: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<Spawned<T>> {
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'], env: env ?? process.env });
  if (child.pid === undefined) throw new Error(`could not spawn the ${what}`);
  const unregister = onTeardown(`${what} pid ${child.pid}`, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  try {
    const ready = await new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${what} did not listen within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      let out = '';
      child.stdout?.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        const nl = out.indexOf('\n');
        if (nl === -1) return;
        clearTimeout(t);
        try {
          resolve(JSON.parse(out.slice(0, nl)) as T);
        } catch (err) {
          reject(err as Error);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`${what} exited with ${code} before listening`));
      });
    });
    return { child, ready, unregister };
  } catch (err) {
    unregister();
    throw err;
  }
}

/** In a helper: exit when the benchmark closes our stdin (or dies). */
export function leashToStdin(): void {
  process.stdin.on('end', () => process.exit(0)).on('error', () => process.exit(0)).resume();
}
