/**
 * A private, throw-away CrowdSec for tests, from Debian's crowdsec package
 * (1.4.6 on Debian 12; .ci/run installs it): the agent and the Local API in
 * one process, on a free loopback port, with its own config directory,
 * SQLite database and log in a temp dir. No Central API (online_client is
 * left out: nothing is registered, pulled or pushed), no Prometheus
 * listener, no hub download: the parsers come from the offline hub the
 * package ships in /usr/share/crowdsec/hub, and Doorman's own parser and
 * scenarios from contrib/crowdsec/. They are copied, not linked: CrowdSec
 * 1.4 loads a symlinked item only when it points into its hub.
 *
 * The agent reads one file, `signals` (Doorman's crowdsec.signals_log),
 * labelled type doorman. stop() and resume() stop and start the same
 * instance (same port, same database), to test a Local API that goes away.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO_ROOT } from './daemon.js';
import { run, type RunResult } from './guard.js';
import { freePort } from './redis.js';

export const CROWDSEC = '/usr/bin/crowdsec';
export const CSCLI = '/usr/bin/cscli';
/** The offline hub Debian's package ships (README.Debian, "Offline hub"). */
export const OFFLINE_HUB = '/usr/share/crowdsec/hub';
/** Grok patterns, a conffile of the package. */
const PATTERNS = '/etc/crowdsec/patterns';

export function crowdsecMissing(): string | undefined {
  return [CROWDSEC, CSCLI, join(OFFLINE_HUB, '.index.json'), PATTERNS].find((p) => !existsSync(p));
}

export const CROWDSEC_SKIP = `SKIPPED: ${crowdsecMissing() ?? 'crowdsec'} not found (Debian package crowdsec; .ci/run installs it)`;

/** How long CrowdSec may take to open its Local API and start reading (about a second here). */
const START_MS = 30_000;

export class TestCrowdsec {
  readonly dir: string;
  readonly port: number;
  readonly config: string;
  /** The file the agent reads: give it to Doorman as crowdsec.signals_log. */
  readonly signals: string;
  private child: ChildProcess | null = null;
  private output = '';

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
    this.config = join(dir, 'config.yaml');
    this.signals = join(dir, 'doorman-signals.log');
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** What the process wrote, for a failed test's message. */
  get log(): string {
    return this.output;
  }

  static async start(): Promise<TestCrowdsec> {
    const dir = await mkdtemp(join(tmpdir(), 'doorman-crowdsec-'));
    const cs = new TestCrowdsec(dir, await freePort());
    try {
      cs.writeConfig();
      // The agent's own machine account, written to local_api_credentials.yaml.
      await cs.cscliOk('machines', 'add', 'doorman-test-agent', '--auto', '--force');
      await cs.resume();
    } catch (err) {
      await cs.close();
      throw err;
    }
    return cs;
  }

  private writeConfig(): void {
    const d = this.dir;
    for (const sub of ['data', 'parsers/s00-raw', 'parsers/s01-parse', 'parsers/s02-enrich', 'scenarios', 'postoverflows', 'collections', 'notifications']) mkdirSync(join(d, sub), { recursive: true });
    copyFileSync(join(OFFLINE_HUB, 'parsers/s00-raw/crowdsecurity/syslog-logs.yaml'), join(d, 'parsers/s00-raw/syslog-logs.yaml'));
    copyFileSync(join(OFFLINE_HUB, 'parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml'), join(d, 'parsers/s02-enrich/dateparse-enrich.yaml'));
    const contrib = join(REPO_ROOT, 'contrib/crowdsec');
    copyFileSync(join(contrib, 'parsers/s01-parse/doorman-logs.yaml'), join(d, 'parsers/s01-parse/doorman-logs.yaml'));
    for (const f of ['doorman-mail-auth-bf.yaml', 'doorman-mail-refused.yaml']) copyFileSync(join(contrib, 'scenarios', f), join(d, 'scenarios', f));
    symlinkSync(PATTERNS, join(d, 'patterns'));
    writeFileSync(this.signals, '');
    writeFileSync(join(d, 'acquis.yaml'), `filenames:\n  - ${this.signals}\nlabels:\n  type: doorman\n`);
    writeFileSync(join(d, 'simulation.yaml'), 'simulation: off\n');
    writeFileSync(
      join(d, 'profiles.yaml'),
      ['name: default_ip_remediation', 'filters:', ' - Alert.Remediation == true && Alert.GetScope() == "Ip"', 'decisions:', ' - type: ban', '   duration: 4h', 'on_success: break', ''].join('\n'),
    );
    writeFileSync(
      this.config,
      [
        'common:',
        '  daemonize: false',
        '  log_media: stdout',
        '  log_level: info',
        `  working_dir: ${d}`,
        'config_paths:',
        `  config_dir: ${d}/`,
        `  data_dir: ${d}/data/`,
        `  simulation_path: ${d}/simulation.yaml`,
        `  hub_dir: ${OFFLINE_HUB}/`,
        `  index_path: ${OFFLINE_HUB}/.index.json`,
        `  notification_dir: ${d}/notifications/`,
        '  plugin_dir: /usr/lib/crowdsec/plugins/',
        'crowdsec_service:',
        `  acquisition_path: ${d}/acquis.yaml`,
        '  parser_routines: 1',
        'cscli:',
        '  output: human',
        '  color: false',
        'db_config:',
        '  log_level: info',
        '  type: sqlite',
        `  db_path: ${d}/data/crowdsec.db`,
        '  use_wal: true',
        'api:',
        '  client:',
        `    credentials_path: ${d}/local_api_credentials.yaml`,
        '  server:',
        '    log_level: info',
        `    listen_uri: 127.0.0.1:${this.port}`,
        `    profiles_path: ${d}/profiles.yaml`,
        '    trusted_ips:',
        '      - 127.0.0.1',
        'prometheus:',
        '  enabled: false',
        '',
      ].join('\n'),
    );
  }

  /** cscli on this instance, with a deadline; never rejects on a non-zero exit. */
  cscli(...args: string[]): Promise<RunResult> {
    return run(CSCLI, ['-c', this.config, '--error', ...args], 20_000);
  }

  /** cscli that must succeed: its stdout. */
  async cscliOk(...args: string[]): Promise<string> {
    const r = await this.cscli(...args);
    if (r.code !== 0) throw new Error(`cscli ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** A bouncer key (`cscli bouncers add NAME -o raw`). */
  async addBouncer(name: string): Promise<string> {
    return (await this.cscliOk('bouncers', 'add', name, '-o', 'raw')).trim();
  }

  /** Starts the process (again, after stop()); resolves once the Local API answers and the agent reads its file. */
  async resume(): Promise<void> {
    const before = this.output.length;
    const child = spawn(CROWDSEC, ['-c', this.config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const take = (b: Buffer) => {
      this.output += b.toString('utf8');
      if (this.output.length > 1_000_000) this.output = this.output.slice(-500_000);
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    const deadline = Date.now() + START_MS;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`crowdsec exited ${child.exitCode} at start:\n${this.output.slice(before)}`);
      const recent = this.output.slice(before);
      if (recent.includes('Starting processing data') && (await this.answers())) return;
      if (Date.now() > deadline) throw new Error(`crowdsec did not start within ${START_MS} ms:\n${recent}`);
      await sleep(50);
    }
  }

  /** Whether the Local API answers HTTP (403 without a key). */
  private async answers(): Promise<boolean> {
    try {
      const r = await fetch(`${this.url}/v1/decisions/stream`, { signal: AbortSignal.timeout(1000) });
      await r.body?.cancel();
      return r.status === 403;
    } catch {
      return false;
    }
  }

  /** Stops the process (SIGTERM, then SIGKILL after 10 s); the database stays for resume(). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}
