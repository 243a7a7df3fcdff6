import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from './load.js';
import { reloadableChanges, restartOnlyChanges } from './reload.js';

const base = {
  services: {
    imap: { limits: { connections_per_address: 5 }, proxy: { listen: ['127.0.0.1:1143'], backend: '127.0.0.1:143', proxy_protocol: 'v2' } },
    smtp: { limits: { connection_rate: 30 } },
  },
};
const conf = (o: object) => parseConfig(o, 'doorman.yaml');

test('rules, exceptions, overrides and the log level reload; nothing else changed', () => {
  const next = structuredClone(base) as any;
  next.services.imap.limits.connections_per_address = 3;
  next.services.smtp.countries = { connect: { deny: ['KP'] } };
  next.services.pop3 = { limits: { connections_per_address: 2 } };
  const a = conf(base);
  const b = conf({ ...next, exceptions: ['192.0.2.0/24'], log: { level: 'debug' } });
  assert.deepEqual(restartOnlyChanges(a, b), []);
  assert.deepEqual(reloadableChanges(a, b), ['log.level', 'services.imap.limits', 'services.pop3', 'services.smtp.countries', 'exceptions']);
  assert.deepEqual(reloadableChanges(a, conf(base)), []);
});

test('listeners, the store, state files, proxies and protocols need a restart, and are named', () => {
  const next = structuredClone(base) as any;
  next.services.imap.proxy.listen = ['127.0.0.1:2143'];
  next.services.smtp.protocol = 'submission';
  next.services.pop3s = { proxy: { listen: ['127.0.0.1:995'], backend: '127.0.0.1:1995', proxy_protocol: 'none' } };
  const b = conf({ ...next, anvil: { socket: '/run/other' }, store: { type: 'memory', lease: '60s' }, metrics: { listen: '127.0.0.1:9525' } });
  assert.deepEqual(restartOnlyChanges(conf(base), b), ['store', 'anvil', 'metrics', 'services.imap.proxy', 'services.pop3s.proxy', 'services.smtp.protocol']);
});
