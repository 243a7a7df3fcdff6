/**
 * A client at the guard proxy's door, refused there: the listener's accept
 * (the net.Server 'connection' event, with a stand-in socket), the address
 * parsed, the gatekeeper's facts with the embedded country database asked
 * for real (special-purpose check, then the MaxMind reader), a country rule
 * refusing it, and the refusal written in IMAP's words. An admitted client
 * would be relayed to a backend over a real socket, which has no place
 * under callgrind, so every client here comes from a country the rule does
 * not allow. Run by ./index.ts when BENCH_WORKLOAD=guard.
 *
 *   node dist/bench/instructions/guard.js ROOT ROUNDS
 *
 * The clients are a fixed pool (three IPv4 addresses to one IPv6, all with
 * a country in the database), made whatever ROUNDS is, so the run with none
 * takes their making away with Node's start-up.
 */
import { EventEmitter } from 'node:events';
import { benchGate, load } from './load.js';

const [root = '.', roundsText = '30000'] = process.argv.slice(2);
const rounds = Number(roundsText);
const POOL = 4096;

const { gate } = await benchGate(root);
const { Rules } = await load(root, 'core/rules.js');
const { serviceSchema } = await load(root, 'config/rules-schema.js');
const { openCountryLookup } = await load(root, 'geo/country.js');
const { GuardListener } = await load(root, 'listeners/guard-proxy.js');
const { ConnectionRegistry } = await load(root, 'core/connections.js');
const { DoorEventBus } = await load(root, 'core/events.js');
const { NetworkSet } = await load(root, 'core/networks.js');
const quiet = { info() {}, warn() {}, error() {}, debug() {}, isLevelEnabled: () => false, child: () => quiet };

const geo = await openCountryLookup(undefined, { watch: false });
gate.setCountrySource(geo);
const imap = serviceSchema.parse({ protocol: 'imap', limits: { connections_per_address: 1000, connection_rate: 100_000 }, countries: { connect: { allow: ['AQ'] } } });
gate.setRules(Rules.compile({ services: { imap }, exceptions: [], overrides: [] }, 'bench'));

// Addresses spread over the space, kept when the database gives them a country other than AQ.
const pool: string[] = [];
let seed = 1;
const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
while (pool.length < POOL) {
  const v6 = pool.length % 4 === 3;
  const a = v6
    ? `2${(next() % 0xfff).toString(16).padStart(3, '0')}:${(next() & 0xffff).toString(16)}:${(next() & 0xffff).toString(16)}::${(next() & 0xffff).toString(16)}`
    : `${(next() >>> 24) % 223 + 1}.${next() >>> 24}.${next() >>> 24}.${next() >>> 24}`;
  const cc = geo.country(a);
  if (cc !== null && cc !== 'AQ') pool.push(a);
}

const guard = new GuardListener(gate, new ConnectionRegistry(), new DoorEventBus(), quiet, {
  service: 'imap',
  protocol: 'imap',
  listen: '127.0.0.1:0',
  backend: '127.0.0.1:9',
  proxyProtocol: 'none',
  trusted: NetworkSet.parse([]),
  hostname: 'mx.test',
  texts: null,
  maxConnections: 1000,
  connectTimeoutMs: 1000,
  idleTimeoutMs: 600_000,
  headerTimeoutMs: 1000,
});
await guard.listen();
// The net.Server the guard accepts on: its own before it stood on the shared StreamListener, the listener's since.
const server = ((guard as any).server ?? (guard as any).listener.server) as EventEmitter;

/** A socket stand-in: what the guard calls on an accepted socket it refuses, and a close that runs its 'close' handlers. */
class StandIn {
  readonly remotePort = 40_000;
  readonly localAddress = '127.0.0.1';
  destroyed = false;
  writableEnded = false;
  written: Buffer | null = null;
  private readonly closeHandlers: Array<() => void> = [];
  constructor(readonly remoteAddress: string) {}
  on(event: string, f: () => void): this {
    if (event === 'close') this.closeHandlers.push(f);
    return this;
  }
  once(event: string, f: () => void): this {
    return this.on(event, f);
  }
  removeListener(): this {
    return this;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
  end(b: Buffer): this {
    this.written = b;
    this.writableEnded = true;
    return this;
  }
  destroy(): this {
    this.destroyed = true;
    return this;
  }
  close(): void {
    for (const f of this.closeHandlers) f.call(this);
  }
}

const want = '* BYE [CONTACTADMIN] Access from your country is not allowed\r\n';
for (let i = 0; i < rounds; i++) {
  const s = new StandIn(pool[i % POOL] as string);
  server.emit('connection', s);
  if (i < POOL && s.written?.toString('latin1') !== want) throw new Error(`${s.remoteAddress} was answered ${JSON.stringify(s.written?.toString('latin1'))}: the workload must refuse every client by its country`);
  s.close();
}
await guard.close();
geo.close();
process.stdout.write(`rounds ${rounds}\n`);
