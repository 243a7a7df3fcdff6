/**
 * A private, throw-away redis-server for tests: its own temp dir, a free
 * loopback port, persistence off (no RDB, no AOF), stopped and removed by
 * stop(). Needs Debian's redis-server (installed by .ci/run); without it,
 * redisAvailable() is false and tests say loudly that they skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectWithin } from './net.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

export function redisAvailable(): boolean {
  return existsSync(REDIS_SERVER);
}

export const REDIS_SKIP = `SKIPPED: ${REDIS_SERVER} not found (Debian package redis-server; .ci/run installs it)`;

/** A port free at the time of asking, on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export class TestRedis {
  readonly port: number;
  readonly dir: string;
  private child: ChildProcess | null = null;
  private output = '';

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<TestRedis> {
    const dir = await mkdtemp(join(tmpdir(), 'doorman-redis-'));
    const r = new TestRedis(await freePort(), dir);
    await r.resume();
    return r;
  }

  /** Starts the server (again, after stop(false)) on the same port, empty: persistence is off. */
  async resume(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', '--logfile', ''];
    const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.output = '';
    child.stdout?.on('data', (b: Buffer) => (this.output += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (this.output += b.toString()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`redis-server exited ${child.exitCode}: ${this.output.slice(-2000)}`);
      try {
        const s = await connectWithin('127.0.0.1', this.port, 500, 'redis-server');
        s.destroy();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${this.port}: ${(err as Error).message}\n${this.output.slice(-2000)}`);
        await sleep(20);
      }
    }
  }

  /** SIGSTOP: the server keeps its sockets open and answers nothing (a hung Redis). */
  freeze(): void {
    this.child?.kill('SIGSTOP');
  }

  thaw(): void {
    this.child?.kill('SIGCONT');
  }

  /** Stops the server; with `remove`, deletes its dir too. */
  async stop(remove = true): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child !== null && child.exitCode === null) {
      child.kill('SIGCONT');
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    }
    if (remove) await rm(this.dir, { recursive: true, force: true });
  }
}
