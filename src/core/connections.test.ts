import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionRegistry, type ConnectionHandle, type ConnectionInfo } from './connections.js';

function fakeHandle(): ConnectionHandle & { kicked: string[] } {
  const kicked: string[] = [];
  return { kicked, bytesIn: () => 10, bytesOut: () => 20, encrypted: () => false, kick: (r) => void kicked.push(r) };
}

function info(r: ConnectionRegistry, service: string, address: string, country: string | null, startedAt: number): ConnectionInfo {
  return { id: r.newId(), service, protocol: service === 'smtp' ? 'smtp' : 'imap', client: { address, port: 40000 }, country, listen: '0.0.0.0:143', backend: '127.0.0.1:10143', startedAt };
}

function filled() {
  const r = new ConnectionRegistry('n1-');
  const handles = new Map<string, ReturnType<typeof fakeHandle>>();
  const rows: Array<[string, string, string | null]> = [
    ['imap', '192.0.2.1', 'DE'],
    ['imap', '192.0.2.1', 'DE'],
    ['imap', '192.0.2.77', 'DE'],
    ['smtp', '2001:db8::5', 'FR'],
    ['smtp', '198.51.100.9', null],
  ];
  rows.forEach(([s, a, c], i) => {
    const inf = info(r, s, a, c, 1000 - i);
    const h = fakeHandle();
    handles.set(inf.id, h);
    r.add(inf, h);
  });
  return { r, handles };
}

test('registry: lists by service, address, network and country, oldest first, with live bytes', () => {
  const { r } = filled();
  assert.equal(r.size, 5);
  assert.deepEqual(r.list({ service: 'imap' }).map((v) => v.client.address), ['192.0.2.77', '192.0.2.1', '192.0.2.1']);
  assert.equal(r.list({ address: '192.0.2.1' }).length, 2);
  assert.equal(r.list({ address: '::ffff:192.0.2.1' }).length, 2, 'a mapped address finds its IPv4 clients');
  assert.equal(r.list({ address: '192.0.2.0/24' }).length, 3);
  assert.equal(r.list({ address: '2001:db8::/32' }).length, 1);
  assert.equal(r.list({ address: '2001:DB8:0::5' }).length, 1, 'addresses are compared in canonical form');
  assert.equal(r.list({ country: '' }).length, 1, 'no country is ""');
  assert.deepEqual(r.list({ service: 'smtp', country: 'FR' }).map((v) => [v.bytesIn, v.bytesOut, v.encrypted]), [[10, 20, false]]);
  assert.deepEqual(r.countsByService(), { imap: 3, smtp: 2 });
  assert.deepEqual(r.countsByCountry(), { DE: 3, FR: 1, '': 1 });
  assert.match(r.newId(), /^n1-/);
});

test('registry: a page counts every match and views only its own; counts per address', () => {
  const { r } = filled();
  const p = r.page({}, 1, 2);
  assert.equal(p.total, 5);
  assert.deepEqual(p.items.map((v) => v.client.address), r.list().slice(1, 3).map((v) => v.client.address));
  assert.deepEqual(r.page({ service: 'imap' }, 2, 10).items.length, 1);
  assert.deepEqual(r.page({ service: 'pop3' }, 0, 10), { total: 0, items: [] });
  assert.deepEqual(
    r.countsByAddress().sort((a, b) => b.count - a.count || (a.address < b.address ? -1 : 1)),
    [
      { address: '192.0.2.1', country: 'DE', count: 2 },
      { address: '192.0.2.77', country: 'DE', count: 1 },
      { address: '198.51.100.9', country: null, count: 1 },
      { address: '2001:db8::5', country: 'FR', count: 1 },
    ],
  );
});

test('registry: remove forgets a connection once; counts drop to nothing', () => {
  const { r } = filled();
  for (const v of r.list()) {
    r.remove(v.id);
    r.remove(v.id);
  }
  assert.equal(r.size, 0);
  assert.deepEqual(r.countsByService(), {});
  assert.deepEqual(r.countsByCountry(), {});
  assert.deepEqual(r.list({ address: '192.0.2.1' }), []);
});
