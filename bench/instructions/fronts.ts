/**
 * ./workload.ts's round, through the front-ends instead of straight to the
 * gatekeeper: the bytes smtpd sends to the anvil service and to the policy
 * service go through their sessions (framing, decoding, the request table,
 * the reply's encoding and write), on sockets that are stand-ins, so what
 * the front-ends add per request (the decision timer, say) is counted. Run
 * by ./index.ts when BENCH_WORKLOAD=fronts.
 *
 *   node dist/bench/instructions/fronts.js ROOT ROUNDS
 *
 * ROOT's build is driven through its own classes; the sessions are made the
 * way its listeners make them on accept. A build that has a decision timer
 * (src/observability/latency.ts) gets one per front, as the daemon wires
 * them; an older build has none to get.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { benchGate, load } from './load.js';

const [root = '.', roundsText = '30000'] = process.argv.slice(2);
const rounds = Number(roundsText);
const { engine, gate } = await benchGate(root);
const { AnvilServer } = await load(root, 'listeners/anvil-server.js');
const { PolicyServer } = await load(root, 'listeners/policy-server.js');
const latency = existsSync(join(root, 'dist', 'src', 'observability', 'latency.js')) ? new (await load(root, 'observability/latency.js')).DecisionLatency() : null;
const quiet = { info() {}, warn() {}, error() {}, debug() {}, isLevelEnabled: () => false };

const common = { mode: 0o666, uid: null, gid: null, maxClients: 10, requestTimeoutMs: 10_000, idleTimeoutMs: 3_600_000 };
// Since issue 18 the anvil service goes through the gatekeeper; before, it took the engine and reported clients to the gate.
const anvilFront = typeof gate.anvilConnect === 'function' ? gate : engine;
const anvil = new AnvilServer(anvilFront, quiet, { ...common, socket: '/nonexistent/anvil', maxBadRequests: 10, clients: gate, timer: latency?.timer('anvil') });
const policy = new PolicyServer(gate, quiet, { ...common, listen: ['/nonexistent/policy'], service: 'smtp', defaultAction: 'DUNNO', decisionTimeoutMs: 500, timer: latency?.timer('policy') });

/** A socket stand-in: keeps the 'data' handler, takes every write, counts what it was told. */
function standIn(): { socket: object; feed: (text: string) => void; replies: () => string[] } {
  let onData: ((b: Buffer) => void) | null = null;
  const out: string[] = [];
  const socket = {
    on(event: string, f: (b: Buffer) => void) {
      if (event === 'data') onData = f;
      return socket;
    },
    once() {
      return socket;
    },
    write(s: string) {
      if (out.length < 8) out.push(s);
      return true;
    },
    pause() {},
    resume() {},
    destroy() {
      throw new Error('a bench session was dropped: the requests are wrong');
    },
  };
  return { socket, feed: (text) => onData?.(Buffer.from(text, 'latin1')), replies: () => out };
}

// Made as the listeners make them on accept (their `accept` callbacks; private to TypeScript, plain properties at run time).
const a = standIn();
(anvil as any).listener.accept(a.socket);
const p = standIn();
(policy as any).listeners[0].accept(p.socket);

for (let i = 0; i < rounds; i++) {
  const addr = `198.51.${(i >> 8) & 255}.${i & 255}`;
  a.feed(`request=connect\nident=smtp:${addr}\n\n`);
  p.feed(`request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address=${addr}\n\n`);
  p.feed(`request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=${addr}\n\n`);
  a.feed(`request=disconnect\nident=smtp:${addr}\n\n`);
}
if (rounds > 0) {
  const [greeting, connect] = a.replies();
  if (!greeting?.includes('anvil_protocol') || !connect?.startsWith('status=0\n')) throw new Error(`anvil answered ${JSON.stringify(a.replies().slice(0, 2))}`);
  const [first] = p.replies();
  if (first !== 'action=DUNNO\n\n') throw new Error(`the policy service answered ${JSON.stringify(first)}: the workload must refuse nothing`);
  if (p.replies().some((r) => r !== 'action=DUNNO\n\n')) throw new Error('the policy service refused: the workload must refuse nothing');
}
process.stdout.write(`rounds ${rounds}\n`);
