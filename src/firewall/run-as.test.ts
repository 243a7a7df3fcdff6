/** firewall.nft with run_as: allowed, since nft runs in the helper that keeps root (./nft-run.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.js';
import { checkRunAs } from '../privileges.js';

const config = (nft: object | null) => parseConfig({ run_as: { user: 'nobody' }, firewall: { nft } }, '/etc/doorman/doorman.yaml');

test('started as root with run_as.user, firewall.nft is no reason to refuse: the plain nft command, a path, a wrapper, or none', () => {
  for (const nft of [{}, { command: ['/usr/sbin/nft'] }, { command: ['/usr/local/sbin/doorman-nft'] }, null]) {
    const target = checkRunAs(config(nft), 0);
    assert.ok(target !== null && target.uid !== 0, JSON.stringify(nft));
  }
  assert.equal(checkRunAs(config({}), 1000), null, 'started as a user: nothing to drop');
});

test('the firewall keys are checked: both sets null, a bad table, a name nft would not read', () => {
  assert.throws(() => config({ set_v4: null, set_v6: null }), /firewall\.nft: got .*expected set_v4, set_v6 or both naming a set/);
  assert.throws(() => config({ table: 'filter' }), /firewall\.nft\.table: got "filter", expected a family \(inet, ip, ip6, bridge, netdev\) and a table name/);
  assert.throws(() => config({ set_v4: 'doorman v4' }), /firewall\.nft\.set_v4: got "doorman v4", expected the name of a set of type ipv4_addr/);
  assert.throws(() => config({ command: [] }), /firewall\.nft\.command/);
  assert.equal(config({}).firewall.nft?.table, 'inet filter');
});
