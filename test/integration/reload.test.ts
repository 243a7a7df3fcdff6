/**
 * Configuration reload on a real daemon process: SIGHUP and `doorman reload`
 * re-read the file. A valid change to the rules is in force at once with no
 * connection dropped and no count lost; an invalid file, or one changing
 * what needs a restart, is refused with the reason and the running
 * configuration stays.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { doorman, show } from '../helpers/cli.js';
import { startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import { startFakeBackend, type FakeBackend } from '../helpers/fake-backend.js';
import { RawClient } from '../helpers/raw-client.js';
import { stateIn } from '../helpers/state.js';

const CLIENT = '127.0.0.40';

describe('reload', () => {
  let backend: FakeBackend;
  let d: DoormanProcess;
  let port: number;
  let admin: string;
  let config: Record<string, any>;
  const clients: RawClient[] = [];

  const write = (c: object) => writeFile(d.configPath, stringify(c));
  const open = async () => {
    const c = await RawClient.open(port, { localAddress: CLIENT });
    const line = await c.waitFor(/^.*\r\n/);
    clients.push(c);
    return line;
  };
  const logged = (msg: string, after: number) => d.waitForLog((l) => l['msg'] === msg && Number(l['time'] ?? 0) >= after, 5000);

  before(async () => {
    backend = await startFakeBackend({ proxy: true, greeting: '* OK backend ready\r\n' });
    config = {
      run_as: { allow_root: true },
      anvil: { enabled: false },
      admin: { listen: '127.0.0.1:0' },
      services: {
        imap: {
          limits: { connections_per_address: 1 },
          proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2' },
        },
      },
    };
    d = await startDoorman(config);
    config['state'] = stateIn(d.dir);
    port = (await d.waitForLog((l) => l['msg'] === 'proxy listening'))['port'] as number;
    const line = await d.waitForLog((l) => String(l['msg']).startsWith('admin API'));
    admin = /(http:\/\/\S+?)\/?$/.exec(String(line['msg']))?.[1] ?? '';
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await d?.stop();
    await backend?.close();
  });

  test('SIGHUP with a raised limit: in force at once, the open session kept, its count too', async () => {
    assert.match(await open(), /^\* OK backend ready/);
    assert.match(await open(), /^\* BYE \[UNAVAILABLE\].*at most 1 at once/);
    const t = Date.now();
    config['services'].imap.limits.connections_per_address = 2;
    // The state section must not change (a restart-only key): keep what the test daemon started with.
    const { state: _s, ...rest } = config;
    await write(rest);
    d.proc.kill('SIGHUP');
    const done = await logged('configuration reloaded', t);
    assert.deepEqual(done['changed'], ['services.imap.limits']);
    assert.match(await open(), /^\* OK backend ready/, 'the second session is allowed now');
    assert.match(await open(), /^\* BYE \[UNAVAILABLE\].*at most 2 at once/, 'the first is still counted');
    const status = (await (await fetch(`${admin}/api/status`)).json()) as { connections: number };
    assert.equal(status.connections, 2, 'no connection dropped');
  });

  test('an invalid file is refused with the file and key named; the running rules stay', async () => {
    const t = Date.now();
    const { state: _s, ...rest } = config;
    await write({ ...rest, services: { imap: { ...rest['services'].imap, limits: { connections_per_adress: 3 } } } });
    d.proc.kill('SIGHUP');
    const refused = await logged('SIGHUP: configuration not reloaded; the running configuration stays', t);
    assert.match(String(refused['err']), /doorman\.yaml: services\.imap\.limits\.connections_per_adress: .*no such key/);
    assert.equal(d.proc.exitCode, null);
    assert.match(await open(), /^\* BYE \[UNAVAILABLE\].*at most 2 at once/, 'still 2');
    const cli = await doorman(['reload', '--url', admin]);
    assert.equal(cli.code, 1, show(cli));
    assert.match(cli.stderr, /connections_per_adress/);
  });

  test('doorman reload: a change that needs a restart is refused whole; a valid one is applied', async () => {
    const { state: _s, ...rest } = config;
    await write({ ...rest, anvil: { enabled: true }, services: { imap: { ...rest['services'].imap, limits: { connections_per_address: 5 } } } });
    const refused = await doorman(['reload', '--url', admin]);
    assert.equal(refused.code, 1, show(refused));
    assert.match(refused.stderr, /need a restart: anvil/);
    assert.match(await open(), /^\* BYE \[UNAVAILABLE\].*at most 2 at once/, 'nothing of it applied');
    await write({ ...rest, log: { level: 'debug' }, services: { imap: { ...rest['services'].imap, limits: { connections_per_address: 5 } } } });
    const ok = await doorman(['reload', '--url', admin]);
    assert.equal(ok.code, 0, show(ok));
    assert.equal(ok.stdout, 'configuration reloaded; changed: log.level, services.imap.limits\n');
    assert.match(await open(), /^\* OK backend ready/);
  });
});
