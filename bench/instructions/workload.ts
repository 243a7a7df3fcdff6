/**
 * A fixed amount of the decision path's work, with no sockets and no clock
 * reads that vary: for each round, an anvil connect of a new IPv4 client, the
 * policy service's CONNECT check and one counted RCPT for it, then the
 * disconnect. Run under callgrind by ./index.ts, once with ROUNDS=0 to take
 * away Node's start-up.
 *
 *   node dist/bench/instructions/workload.js ROOT ROUNDS
 *
 * ROOT is a checkout whose `dist/` holds a build: this one, or an older one
 * to compare with (its module paths and constructors must match these).
 */
import { benchGate } from './load.js';

const [root = '.', roundsText = '30000'] = process.argv.slice(2);
const rounds = Number(roundsText);
const { engine, gate } = await benchGate(root);
const owner = engine.createOwner('anvil');
let refused = 0;
for (let i = 0; i < rounds; i++) {
  const a = `198.51.${(i >> 8) & 255}.${i & 255}`;
  engine.connect(`smtp:${a}`, owner);
  if (gate.checkConnect('smtp', a).action === 'refuse') refused++;
  if (gate.event('smtp', a, 'rcpt').action === 'refuse') refused++;
  engine.disconnect(`smtp:${a}`, owner);
}
if (refused !== 0) throw new Error(`${refused} refusals: the workload must refuse nothing`);
process.stdout.write(`rounds ${rounds}\n`);
