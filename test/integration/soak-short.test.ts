/**
 * The soak (bench/soak, `npm run soak` runs it for ten minutes) for about
 * 20 s: a real daemon under mixed anvil, policy and proxied traffic, then
 * every count must be back to zero. Asserts what leaked, not timing or
 * memory: 20 s under a shared machine's load says nothing about RSS.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSoak } from '../../bench/soak/soak.js';

test('short soak: mixed traffic for 15 s, then every count is back to zero and the daemon stops cleanly', async (t) => {
  const report = await runSoak({
    seconds: 15,
    warmupSeconds: 3,
    sampleSeconds: 5,
    anvilClients: 2,
    policyClients: 1,
    proxyWorkers: 4,
    pauseMs: 10,
    perAddressLimit: 3,
  });
  t.diagnostic(`${report.opsTotal} operations in ${report.seconds.toFixed(1)} s: ${JSON.stringify(report.ops)}`);
  assert.deepEqual(report.firstErrors, [], 'every answer as expected');
  for (const kind of ['anvil connect', 'policy CONNECT', 'proxy session', 'proxy session kicked', 'proxy client reset', 'proxy refused over the per-address limit']) {
    assert.ok((report.ops[kind] ?? 0) > 0, `the traffic included ${kind}`);
  }
  assert.deepEqual(
    report.leaks.filter((l) => l.value !== 0),
    [],
    'nothing left counted once every client has closed',
  );
  assert.ok(report.leaks.length >= 6, 'the zero check looked at every count');
  const [first] = report.samples;
  const end = report.samples.at(-1);
  assert.ok(end !== undefined && first !== undefined && end.openFds <= first.openFds + 2, `open descriptors back to ${first?.openFds} (now ${end?.openFds})`);
  assert.deepEqual(report.daemonErrorLines, []);
  assert.equal(report.exitCode, 0, 'the daemon stops cleanly on SIGTERM');
});
