/** firewall.nft against run_as: nft needs CAP_NET_ADMIN, which dropping root takes away. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../config/load.js';
import { PrivilegeError } from '../errors.js';
import { checkRunAs } from '../privileges.js';

const config = (nft: object | null) => parseConfig({ run_as: { user: 'nobody' }, firewall: { nft } }, '/etc/doorman/doorman.yaml');

test('started as root with run_as.user, the plain nft command is refused, naming firewall.nft', () => {
  assert.throws(
    () => checkRunAs(config({}), 0),
    (e: PrivilegeError) => e.code === 'DOORMAN_ERR_RUN_AS' && /^\/etc\/doorman\/doorman\.yaml: firewall\.nft: nft needs CAP_NET_ADMIN/.test(e.message),
  );
  assert.throws(() => checkRunAs(config({ command: ['/usr/sbin/nft'] }), 0), PrivilegeError);
});

test('a wrapper command, no firewall, or a start as a user (with the capability given by systemd) are left alone', () => {
  assert.ok(checkRunAs(config({ command: ['/usr/local/sbin/doorman-nft'] }), 0) !== null);
  assert.ok(checkRunAs(config(null), 0) !== null);
  assert.equal(checkRunAs(config({}), 1000), null);
});

test('the firewall keys are checked: both sets null, a bad table, a name nft would not read', () => {
  assert.throws(() => config({ set_v4: null, set_v6: null }), /firewall\.nft: got .*expected set_v4, set_v6 or both naming a set/);
  assert.throws(() => config({ table: 'filter' }), /firewall\.nft\.table: got "filter", expected a family \(inet, ip, ip6, bridge, netdev\) and a table name/);
  assert.throws(() => config({ set_v4: 'doorman v4' }), /firewall\.nft\.set_v4: got "doorman v4", expected the name of a set of type ipv4_addr/);
  assert.throws(() => config({ command: [] }), /firewall\.nft\.command/);
  assert.equal(config({}).firewall.nft?.table, 'inet filter');
});
