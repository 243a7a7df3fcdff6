/**
 * Starts a private Doorman (the built dist/src/cli/main.js) in a temp dir with
 * the anvil service (and whatever `extraYaml` adds), and stops it with
 * SIGTERM to collect its final `statistics:` lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onTeardown } from './teardown.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';

/** dist/bench/anvil/doorman.js → dist/src/cli/main.js */
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

export interface DoormanOptions {
  /** engine.max_entries; must exceed the number of distinct clients the bench makes. */
  readonly maxEntries: number;
  readonly rateTimeUnit: string;
  /** More top-level YAML lines (other suites enable other services). */
  readonly extraYaml?: readonly string[];
  /** log.level (default info). Above info, "doorman ready" is not logged: give `ready`. */
  readonly logLevel?: string;
  /** false: `anvil: { enabled: false }` (bench/proxy measures the proxy alone). Default true. */
  readonly anvil?: boolean;
  /** Node flags after DAEMON_NODE_FLAGS, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[];
  /**
   * Resolves once the daemon serves, instead of waiting for its "doorman
   * ready" log line; `signal` aborts when start() has settled either way.
   */
  readonly ready?: (signal: AbortSignal) => Promise<void>;
}

export class DoormanProcess {
  readonly socket: string;
  readonly pid: number;
  /** JSON log lines (parsed) in arrival order. */
  readonly logs: Array<Record<string, unknown>> = [];
  private readonly child: ChildProcess;
  private readonly dir: string;
  private readonly exited: Promise<number | null>;
  private readonly unregister: () => void;

  private constructor(child: ChildProcess, dir: string, socket: string) {
    this.child = child;
    this.dir = dir;
    this.socket = socket;
    this.pid = child.pid as number;
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    this.unregister = onTeardown(`doorman pid ${this.pid}`, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
  }

  static async start(opts: DoormanOptions): Promise<DoormanProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'doorman-bench-'));
    const socket = join(dir, 'anvil');
    const config = join(dir, 'doorman.yaml');
    writeFileSync(
      config,
      [
        `log: { level: ${opts.logLevel ?? 'info'}, format: json }`,
        // The benchmarks run as root on the bench machine, as the peers do.
        'run_as: { allow_root: true }',
        // status_update_time is long so the only statistics lines are the final ones at SIGTERM.
        `engine: { rate_time_unit: ${opts.rateTimeUnit}, status_update_time: 3600s, max_entries: ${opts.maxEntries} }`,
        opts.anvil === false ? 'anvil: { enabled: false }' : `anvil: { socket: ${socket}, socket_mode: "0666" }`,
        ...(opts.extraYaml ?? []),
        // The admin API's fixed default port would collide with a running Doorman: off unless a suite sets it.
        ...((opts.extraYaml ?? []).some((l) => l.startsWith('admin:')) ? [] : ['admin: { listen: null }']),
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...(opts.nodeFlags ?? []), CLI, 'serve', '--config', config], {
      cwd: dir,
      env: { ...process.env, ...DAEMON_ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid === undefined) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error('could not spawn doorman');
    }
    const d = new DoormanProcess(child, dir, socket);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr = (stderr + s).slice(-4000);
    });
    let partial = '';
    let ready: (() => void) | null = null;
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          d.logs.push(rec);
          if (rec.msg === 'doorman ready') ready?.();
        } catch {
          d.logs.push({ msg: line });
        }
      }
    });
    const probe = new AbortController();
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`doorman not ready after ${READY_TIMEOUT_MS} ms; stderr: ${stderr}`)), READY_TIMEOUT_MS);
        ready = () => {
          clearTimeout(t);
          resolve();
        };
        child.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`doorman exited with ${code} before ready; stderr: ${stderr}`));
        });
        opts.ready?.(probe.signal).then(() => ready?.(), reject);
      });
    } catch (err) {
      d.unregister();
      throw err;
    } finally {
      probe.abort();
    }
    return d;
  }

  /** SIGTERM, wait for exit (SIGKILL after a timeout); returns the exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      this.exited,
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    this.unregister();
    if (code === 'timeout') {
      await this.exited;
      return null;
    }
    return code;
  }

  /** The `statistics: max cache size N` figure from the logs, if logged. */
  maxCacheSize(): number | null {
    for (const rec of [...this.logs].reverse()) {
      const m = typeof rec.msg === 'string' ? /^statistics: max cache size (\d+)/.exec(rec.msg) : null;
      if (m) return Number(m[1]);
    }
    return null;
  }

  get directory(): string {
    return this.dir;
  }
}
