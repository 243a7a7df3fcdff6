/**
 * The npm package as an operator gets it: `npm pack` this checkout, install
 * the tarball into a temporary prefix, run the installed `doorman`, and see
 * that it names its version, serves the real dashboard (not the "not
 * installed" page) and /metrics, and opens the embedded country database.
 * Whatever the daemon reads at run time must be in package.json's `files`.
 *
 * The dependencies: the prefix's node_modules is seeded with a copy of this
 * checkout's (the locked versions), then `npm install --offline --no-save
 * TARBALL` adds doorman beside them and prunes the devDependencies. Offline:
 * the test downloads nothing and needs no network (an unseeded `--offline`
 * install fails with ENOTCACHED, as `npm ci` caches tarballs but not the
 * registry's package documents; an unseeded install from the registry took
 * 9 s and needs it). A copy, not a symlink: npm prunes the tree it installs
 * into and would delete this checkout's devDependencies through a link.
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT, startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import { skipBanner } from '../helpers/skip.js';
import { stateIn } from '../helpers/state.js';

/** npm pack takes about a second and the seeded install about three; past this npm is stuck. */
const NPM_TIMEOUT_MS = 60_000;
/** The installed daemon answers on loopback at once; past this it is hung. */
const FETCH_TIMEOUT_MS = 5_000;

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** npm with none of the npm_config_* a surrounding `npm test` exports (its prefix, its cwd). */
function npm(args: readonly string[], cwd: string): SpawnSyncReturns<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return spawnSync('npm', [...args, '--no-audit', '--no-fund', '--no-update-notifier'], { cwd, env, encoding: 'utf8', timeout: NPM_TIMEOUT_MS, killSignal: 'SIGKILL' });
}

function said(r: SpawnSyncReturns<string>): string {
  return `status ${r.status} signal ${r.signal} ${r.error?.message ?? ''}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
}

const missing = spawnSync('npm', ['--version'], { encoding: 'utf8' }).error !== undefined;
if (missing) skipBanner('npm is not installed: the npm package test (npm pack, install, run the installed doorman) did not run');

test('npm pack, install into a prefix, run it: its version, the dashboard, /metrics and the country database', { skip: missing ? 'npm is not installed' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-npm-'));
  let d: DoormanProcess | undefined;
  // One hook, in this order: the daemon writes its state into dir as it stops.
  t.after(async () => {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const packed = npm(['pack', '--json', '--pack-destination', dir], REPO_ROOT);
  assert.equal(packed.status, 0, said(packed));
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  assert.ok(info !== undefined, said(packed));
  const inTarball = new Set(info.files.map((f) => f.path));
  for (const f of ['dashboard/index.html', 'dashboard/app.js', 'dist/src/cli/main.js', 'package.json']) assert.ok(inTarball.has(f), `${f} is in the tarball`);
  assert.ok(![...inTarball].some((f) => f.endsWith('.test.js')), 'no compiled tests in the tarball');

  const prefix = join(dir, 'prefix');
  mkdirSync(prefix);
  cpSync(join(REPO_ROOT, 'node_modules'), join(prefix, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  const installed = npm(['install', '--prefix', prefix, '--offline', '--no-save', '--ignore-scripts', join(dir, info.filename)], dir);
  assert.equal(installed.status, 0, said(installed));

  // The bin link, as `npm install -g` makes it; node follows it, so the code finds its files beside the real path.
  const bin = join(prefix, 'node_modules', '.bin', 'doorman');
  assert.ok(existsSync(bin), `the doorman command is linked at ${bin}`);
  const version = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8', timeout: FETCH_TIMEOUT_MS });
  assert.equal(version.stdout, `${VERSION}\n`, said(version));

  d = await startDoorman(
    {
      admin: { listen: '127.0.0.1:0' },
      anvil: { socket: join(dir, 'anvil') },
      state: stateIn(dir),
      // A country rule: the daemon opens the embedded database, a dependency's file.
      services: { smtp: { countries: { connect: { deny: ['KP'] } } } },
    },
    { main: bin },
  );
  const geo = await d.waitForLog((l) => l['msg'] === 'country database open');
  assert.match(String(geo['source']), /\(embedded\)$/, d.output());
  const admin = await d.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('admin API and dashboard on '));
  assert.equal(admin['dashboard'], true, `the installed daemon found its dashboard; output:\n${d.output()}`);
  const base = `http://127.0.0.1:${String(admin['port'])}`;
  const get = (path: string): Promise<Response> => fetch(`${base}${path}`, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });

  const root = await get('/');
  assert.equal(root.status, 200);
  assert.match(root.headers.get('content-type') ?? '', /^text\/html/);
  const html = await root.text();
  assert.doesNotMatch(html, /not installed/);
  assert.equal(html, readFileSync(join(REPO_ROOT, 'dashboard', 'index.html'), 'utf8'), 'the dashboard page itself');
  assert.equal((await get('/assets/app.js')).status, 200, 'and its scripts');

  const metrics = await get('/metrics');
  assert.equal(metrics.status, 200);
  assert.match(await metrics.text(), /^# TYPE doorman_connections /m);

  const status = (await (await get('/api/status')).json()) as { version: string };
  assert.equal(status.version, VERSION, 'the API names the installed version too');
});
