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
  private extra: readonly string[] = [];

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(extra: readonly string[] = []): Promise<TestRedis> {
    const dir = await mkdtemp(join(tmpdir(), 'doorman-redis-'));
    const r = new TestRedis(await freePort(), dir);
    await r.resume(extra);
    return r;
  }

  /** Starts the server (again, after stop(false)) on the same port, empty: persistence is off. */
  async resume(extra: readonly string[] = this.extra): Promise<void> {
    this.extra = extra;
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', '--logfile', '', ...extra];
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

export const REDIS_CLI = '/usr/bin/redis-cli';

/**
 * A three-master Redis Cluster on loopback (no replicas), made with
 * `redis-cli --cluster create`; `seeds` are its nodes' host:port.
 */
export class TestRedisCluster {
  readonly nodes: TestRedis[];
  private constructor(nodes: TestRedis[]) {
    this.nodes = nodes;
  }

  get seeds(): Array<{ host: string; port: number }> {
    return this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
  }

  static async start(): Promise<TestRedisCluster> {
    const nodes = await Promise.all([0, 1, 2].map(() => TestRedis.start(['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '5000'])));
    const c = new TestRedisCluster(nodes);
    const { execFile } = await import('node:child_process');
    await new Promise<void>((resolve, reject) => {
      execFile(REDIS_CLI, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`redis-cli --cluster create: ${err.message}\n${stdout}\n${stderr}`)) : resolve(),
      );
    });
    // Every node must agree the cluster is up before clients can use it.
    const deadline = Date.now() + 15_000;
    for (const n of nodes) {
      for (;;) {
        const info = await new Promise<string>((resolve) => execFile(REDIS_CLI, ['-p', String(n.port), 'cluster', 'info'], (_e, out) => resolve(String(out))));
        if (/cluster_state:ok/.test(info)) break;
        if (Date.now() > deadline) throw new Error(`cluster not ok on ${n.port}: ${info}`);
        await sleep(100);
      }
    }
    return c;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
