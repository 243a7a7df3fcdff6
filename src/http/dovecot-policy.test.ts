/**
 * The Dovecot endpoint as a thin adapter, in-process on port 0: what it
 * hands the gatekeeper, what it answers for a request the codec refuses,
 * and a body that arrives in pieces. (test/integration/dovecot-policy.test.ts
 * drives a whole daemon with both generations' requests.)
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { memoryLogger } from '../../test/helpers/log.js';
import { serviceSchema } from '../config/rules-schema.js';
import { dovecotPolicySchema } from '../config/schema.js';
import { systemClock } from '../core/clock.js';
import { DoorEventBus, type RefusalEvent } from '../core/events.js';
import { Gatekeeper } from '../core/gate.js';
import type { ClientAddress } from '../core/ip.js';
import { Rules } from '../core/rules.js';
import type { DecisionTimer } from '../observability/latency.js';
import { CONTINUE_REPLY, encodeDovecotBody, encodeDovecotTarget, type DovecotPolicyFields } from '../protocols/dovecot-policy.js';
import { MemoryStore } from '../store/memory.js';
import { slidingWindow } from '../store/rate.js';
import { DovecotPolicyServer } from './dovecot-policy.js';

const KEY = 'adapter-test-key';
/** 198.51.100.0/24 is in Japan here, and imap allows only Germany at AUTH: a refusal with no counting behind it. */
const COUNTRIES: Record<string, string> = { '198.51.100.23': 'JP', '203.0.113.7': 'DE' };

async function endpoint(t: TestContext) {
  const { log, lines } = memoryLogger();
  const rules = Rules.compile({ services: { imap: serviceSchema.parse({ countries: { auth: { allow: ['DE'] } } }) }, exceptions: [], overrides: [] }, 't');
  const gate = Gatekeeper.open({ store: new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 1000 }), rules, countries: { country: (ip) => COUNTRIES[ip] ?? null }, clock: systemClock, log, rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  t.after(() => gate.stop());
  /** What the gatekeeper was handed for each address. */
  const handed: Array<string | ClientAddress> = [];
  const spy = new Proxy(gate, {
    get(target, name, receiver) {
      const v = Reflect.get(target, name, receiver) as unknown;
      if (name !== 'authAttempt' && name !== 'authSucceeded' && name !== 'authFailed') return v;
      return (service: string, address: string | ClientAddress, ...rest: unknown[]) => {
        handed.push(address);
        return (v as (...a: unknown[]) => unknown).call(target, service, address, ...rest);
      };
    },
  });
  const events = new DoorEventBus();
  const refusals: RefusalEvent[] = [];
  events.on('refusal', (e) => void refusals.push(e));
  let timed = 0;
  const timer: DecisionTimer = { start: () => ++timed, stop: () => undefined };
  const server = new DovecotPolicyServer(spy, log, dovecotPolicySchema.parse({ listen: '127.0.0.1:0', api_key: KEY }), events, timer);
  const port = await server.listen();
  t.after(() => server.close());
  return { port, lines, handed, refusals, timed: () => timed };
}

function httpRequest(command: 'allow' | 'report', body: string | Buffer, headers = `X-API-Key: ${KEY}\r\nContent-Type: application/json\r\n`): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return Buffer.concat([Buffer.from(`POST ${encodeDovecotTarget('/policy', command)} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}Content-Length: ${b.length}\r\n\r\n`), b]);
}

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Reads HTTP/1.1 answers with a Content-Length off one kept-alive socket. */
class RawClient {
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  private constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiting?.();
    });
  }
  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      // No Nagle: a request cut in two must not wait a delayed ACK between its pieces.
      const s = connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }
  write(b: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(b, (err) => (err ? reject(err) : resolve())));
  }
  async answer(): Promise<Answer> {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end !== -1) {
        const [statusLine, ...rest] = this.buf.subarray(0, end).toString('latin1').split('\r\n');
        const headers = Object.fromEntries(rest.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        const length = Number(headers['content-length']);
        if (this.buf.length >= end + 4 + length) {
          const body = this.buf.subarray(end + 4, end + 4 + length).toString();
          this.buf = this.buf.subarray(end + 4 + length);
          return { status: Number(statusLine?.split(' ')[1]), headers, body };
        }
      }
      await new Promise<void>((r) => (this.waiting = r));
    }
  }
  close(): void {
    this.socket.destroy();
  }
}

test('the address is parsed once, by the codec: the gatekeeper gets it parsed, and the refusal names it canonical', async (t) => {
  const { port, handed, refusals, lines } = await endpoint(t);
  const c = await RawClient.open(port);
  t.after(() => c.close());
  await c.write(httpRequest('allow', encodeDovecotBody({ remote: '::ffff:198.51.100.23', login: 'alice', sessionId: 'a1' })));
  const refused = await c.answer();
  assert.deepEqual([refused.status, refused.headers['content-type'], JSON.parse(refused.body)], [200, 'application/json; charset=utf-8', { status: -1, msg: 'country JP of 198.51.100.23 is not in the allow list for imap at auth' }]);
  assert.deepEqual(handed, [{ ip: { words: [0, 0, 0xffff, 0xc6336417], family: 4 }, text: '198.51.100.23' }]);
  assert.deepEqual(refusals.map((e) => [e.address, e.by]), [['198.51.100.23', 'dovecot']]);
  const line = lines.find((l) => l.msg === 'refused');
  assert.deepEqual([line?.['remote'], line?.['check']], ['::ffff:198.51.100.23', 'before-auth'], 'the log keeps remote as Dovecot sent it');

  await c.write(httpRequest('allow', encodeDovecotBody({ remote: 'not-an-address', sessionId: 'a2' })));
  assert.deepEqual([(await c.answer()).body], [CONTINUE_REPLY]);
  assert.equal(handed[1], 'not-an-address', 'no address: the text as it came, which the gate does not judge');
});

test('a request the codec refuses: 400 with its code in fastify\'s error shape, no log line, not timed; the connection stays', async (t) => {
  const { port, lines, timed } = await endpoint(t);
  const c = await RawClient.open(port);
  t.after(() => c.close());
  const before = lines.length;
  await c.write(httpRequest('allow', '{"remote":"203.0.113.7","tls":"false"}'));
  const a = await c.answer();
  assert.equal(a.status, 400);
  assert.deepEqual(JSON.parse(a.body), { statusCode: 400, code: 'DOORMAN_ERR_DOVECOT_TYPE', error: 'Bad Request', message: 'tls: expected a boolean, got a string' });
  assert.notEqual(a.headers['connection'], 'close');
  await c.write(Buffer.from(`POST /policy?command=allow&command=report HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`));
  assert.equal(JSON.parse((await c.answer()).body).code, 'DOORMAN_ERR_DOVECOT_COMMAND');
  assert.equal(lines.length, before);
  assert.equal(timed(), 0);
  await c.write(httpRequest('report', encodeDovecotBody({ remote: '203.0.113.7', success: true })));
  assert.deepEqual([(await c.answer()).body, timed()], [CONTINUE_REPLY, 1]);
});

test('split inputs: a request cut in two at every byte gets the same answer, and UTF-8 cut inside a character decodes whole', async (t) => {
  const { port, lines } = await endpoint(t);
  const fields: DovecotPolicyFields = { deviceId: '', failType: '', login: 'j\u00fcrgen\u{1F600}', protocol: 'imap', pwhash: '0dcd', remote: '198.51.100.23', sessionId: 'split', tls: false };
  const whole = httpRequest('report', encodeDovecotBody({ ...fields, success: false, policyReject: true, failType: 'policy' }));
  const refusedAllow = httpRequest('allow', encodeDovecotBody(fields));
  const c = await RawClient.open(port);
  t.after(() => c.close());
  for (const bytes of [whole, refusedAllow]) {
    for (let cut = 1; cut < bytes.length; cut++) {
      await c.write(bytes.subarray(0, cut));
      await new Promise((r) => setImmediate(r));
      await c.write(bytes.subarray(cut));
      const a = await c.answer();
      assert.equal(a.status, 200, `cut at ${cut}`);
      if (bytes === whole) assert.equal(a.body, CONTINUE_REPLY, `cut at ${cut}`);
      else assert.equal(JSON.parse(a.body).status, -1, `cut at ${cut}`);
    }
  }
  const logins = new Set(lines.filter((l) => l.msg === 'refused').map((l) => l['login']));
  assert.deepEqual([...logins], ['j\u00fcrgen\u{1F600}']);
  assert.equal(lines.filter((l) => l.msg === 'refused').length, refusedAllow.length - 1);
});

test('a login longer than any name is refused, not answered 400 (which Dovecot lets through); an over-long IMAP ID is cut and judged as usual', async (t) => {
  const { port, handed, lines } = await endpoint(t);
  const c = await RawClient.open(port);
  t.after(() => c.close());
  await c.write(httpRequest('allow', JSON.stringify({ remote: '192.0.2.44', login: `alice${' '.repeat(600)}@example.com`, session_id: 'l1' })));
  const long = await c.answer();
  assert.deepEqual([long.status, JSON.parse(long.body)], [200, { status: -1, msg: 'login too long' }]);
  assert.equal(handed.length, 0, 'nothing was asked of the gate');
  assert.ok(lines.some((l) => l.msg === 'refused: a login longer than any name' && l['remote'] === '192.0.2.44'));
  await c.write(httpRequest('allow', JSON.stringify({ remote: '192.0.2.45', login: 'bob', device_id: '"x\\"'.repeat(200), session_id: 'l2' })));
  const id = await c.answer();
  assert.equal(id.status, 200, 'an over-long device_id is no reason to skip the check');
  assert.equal(handed.length, 1, 'the gate judged it');
});
