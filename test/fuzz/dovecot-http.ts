/**
 * Fuzzing the Dovecot auth policy endpoint (src/http/dovecot-policy.ts) end
 * to end; the codec alone is ./dovecot.ts.
 *
 * A request goes through fastify (credentials, content type, the JSON
 * parser, the body cap), then the codec (src/protocols/dovecot-policy.ts),
 * then the gatekeeper, so the inputs go where Dovecot's go: over HTTP to a
 * real daemon on 127.0.0.1, port 0, built by startDaemon from a parsed
 * config. Every answer must be a 200 with a policy reply, or a 4xx with a
 * coded error, fastify's or the codec's (the tally counts them by status and
 * code). A 5xx, an error logged by the server, or no answer within
 * ANSWER_MS fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { pino } from 'pino';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon } from '../../src/main.js';
import { MAX_BODY_BYTES } from '../../src/protocols/dovecot-policy.js';
import { stateIn } from '../helpers/state.js';
import { chunksOf, cutsArb, mutated, randomBytes, type Cuts, type FuzzCodec } from './harness.js';

const KEY = 'fuzz-api-key-0123456789';
const BASIC = { user: 'dovecot', password: 'fuzz-password-123' };
const PATH = '/policy';
/** fastify's bodyLimit in src/http/dovecot-policy.ts. */
const BODY_LIMIT = MAX_BODY_BYTES;
/** A request of a few kilobytes to a local server that takes longer than this is hanging. */
const ANSWER_MS = 10_000;
/** Statuses a client may get for what it sent: anything else (a 5xx above all) is a failure. */
const EXPECTED = new Set([200, 400, 401, 413, 415]);

/** A few addresses again and again, so counts grow and limits refuse; random ones now and then. */
const REMOTES = ['203.0.113.7', '198.51.100.23', '192.0.2.1', '10.0.0.5', '2001:db8::7', '::ffff:203.0.113.7', '::1', '127.0.0.1'];
const remoteArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...REMOTES) },
  { weight: 2, arbitrary: fc.oneof(fc.ipV4(), fc.ipV6()) },
  { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom('', ' 1.2.3.4', '1.2.3.4 ', '01.2.3.4', '1.2.3.4%eth0', 'fe80::1%lo', '::ffff:1.2.3.4.5', '[::1]', 'localhost')) },
);
const str = (max: number) => fc.oneof({ weight: 5, arbitrary: fc.string({ maxLength: Math.min(max, 24) }) }, { weight: 1, arbitrary: fc.integer({ min: max - 1, max: max + 1 }).map((n) => 'x'.repeat(n)) });

/** Bodies as Dovecot sends them, every field optional but remote. */
const validBodyArb = fc.record(
  {
    login: str(512),
    remote: remoteArb,
    protocol: fc.oneof(fc.constantFrom('imap', 'pop3', 'submission', 'smtp', ''), str(32)),
    pwhash: fc.oneof(fc.stringMatching(/^[0-9a-f]{4}$/), str(128)),
    session_id: fc.oneof(fc.constantFrom('s1', 's2', 's3'), str(128)),
    device_id: str(256),
    fail_type: fc.oneof(fc.constantFrom('', 'credentials', 'account', 'internal', 'policy'), str(32)),
    tls: fc.boolean(),
    success: fc.boolean(),
    policy_reject: fc.boolean(),
  },
  { requiredKeys: ['remote'] },
);
/** The same keys with values of any JSON type, and keys that are no field, among them prototype poisons. */
const KEYS = ['login', 'remote', 'protocol', 'pwhash', 'session_id', 'device_id', 'fail_type', 'tls', 'success', 'policy_reject', '__proto__', 'constructor', 'extra'];
const confusedBodyArb = fc
  .tuple(validBodyArb, fc.array(fc.tuple(fc.constantFrom(...KEYS), fc.jsonValue({ maxDepth: 2 })), { maxLength: 4 }))
  .map(([body, extra]) => `{${[...Object.entries(body), ...extra].map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`).join(',')}}`);
/** A valid body padded with an unknown key to a size around fastify's bodyLimit. */
const nearLimitArb = fc.integer({ min: -2, max: 2 }).map((d) => {
  const base = JSON.stringify({ remote: '192.0.2.1', login: 'alice', pad: '' });
  return base.replace('"pad":""', `"pad":"${'p'.repeat(BODY_LIMIT + d - base.length)}"`);
});
const TOKENS = ['"', '{', '}', '[', ']', ',', ':', '\\', '\\u0000', '\\ud800', 'null', '"__proto__":{}', '1e999', '-0', '\u00e9', '\ufeff'].map((t) => Buffer.from(t));

const bodyArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: validBodyArb.map((b) => Buffer.from(JSON.stringify(b))) },
  { weight: 3, arbitrary: confusedBodyArb.map((s) => Buffer.from(s)) },
  { weight: 3, arbitrary: mutated(validBodyArb.map((b) => Buffer.from(JSON.stringify(b))), TOKENS) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? '')) },
  { weight: 1, arbitrary: randomBytes(200) },
  { weight: 1, arbitrary: fc.oneof(nearLimitArb.map((s) => Buffer.from(s)), fc.constant(Buffer.from(`{"remote":"192.0.2.1","login":"${'\u00e9'.repeat(BODY_LIMIT / 2)}"}`))) },
);
const queryArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom('command=allow', 'command=report') },
  { weight: 1, arbitrary: fc.constantFrom('', 'command=', 'command=ALLOW', 'command=allow&command=report', 'command[]=allow', 'command=%ff', 'command=allow&x=1', 'command=%00', 'command=allow%00') },
  { weight: 1, arbitrary: fc.string({ maxLength: 30 }).map((s) => `command=${encodeURIComponent(s)}`) },
);
const printable = fc.stringMatching(/^[\x20-\x7e]{0,40}$/);
const authArb: fc.Arbitrary<Record<string, string>> = fc.oneof(
  { weight: 10, arbitrary: fc.constant({ 'x-api-key': KEY }) },
  { weight: 1, arbitrary: fc.constant({ authorization: `Bearer ${KEY}` }) },
  { weight: 1, arbitrary: fc.constant({ authorization: `Basic ${Buffer.from(`${BASIC.user}:${BASIC.password}`).toString('base64')}` }) },
  { weight: 1, arbitrary: fc.oneof(fc.constant({}), printable.map((s) => ({ 'x-api-key': s })), printable.map((s) => ({ authorization: `Basic ${s}` })), printable.map((s) => ({ authorization: s }))) },
);
const typeArb = fc.oneof(
  { weight: 10, arbitrary: fc.constant('application/json') },
  { weight: 1, arbitrary: fc.constantFrom('application/json; charset=utf-8', 'application/json; charset=utf-16', 'APPLICATION/JSON', 'text/plain', 'application/x-www-form-urlencoded', 'application/jsonx', '', 'application/json;') },
  { weight: 1, arbitrary: printable },
);
const requestArb = fc.record({ query: queryArb, auth: authArb, type: typeArb, body: bodyArb, cuts: cutsArb, chunked: fc.boolean() });

interface Answer {
  readonly status: number;
  readonly body: string;
}

/** One POST over the kept-alive connection: sent whole with a length, or in chunks (Transfer-Encoding: chunked). */
function post(agent: Agent, port: number, query: string, headers: Record<string, string>, body: Buffer, cuts: Cuts, chunked: boolean): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ agent, host: '127.0.0.1', port, method: 'POST', path: `${PATH}?${query}`, headers: chunked ? headers : { ...headers, 'content-length': String(body.length) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(ANSWER_MS, () => req.destroy(new Error(`no answer within ${ANSWER_MS} ms`)));
    req.on('error', reject);
    for (const c of chunked ? chunksOf(body, cuts) : [body]) req.write(c);
    req.end();
  });
}

/** Checks one answer; returns the tally word: status and its error code (fastify's or the codec's), or the policy verdict. */
function judge(a: Answer): string {
  if (!EXPECTED.has(a.status)) throw new Error(`HTTP ${a.status}: ${a.body.slice(0, 300)}`);
  let json: unknown;
  try {
    json = JSON.parse(a.body);
  } catch {
    throw new Error(`HTTP ${a.status} with a body that is not JSON: ${a.body.slice(0, 200)}`);
  }
  const j = json as { status?: unknown; msg?: unknown; code?: unknown };
  if (a.status === 200) {
    if (!Number.isInteger(j.status) || (j.msg !== undefined && typeof j.msg !== 'string')) throw new Error(`a 200 that is no policy reply: ${a.body.slice(0, 200)}`);
    return `200 status=${Math.sign(j.status as number)}`;
  }
  if (a.status === 401) return '401';
  if (typeof j.code !== 'string' || !/^(FST_ERR|DOORMAN_ERR_DOVECOT)_[A-Z0-9_]+$/.test(j.code)) throw new Error(`HTTP ${a.status} without a coded error: ${a.body.slice(0, 200)}`);
  return `${a.status} ${j.code}`;
}

export const dovecotHttpCodec: FuzzCodec = {
  name: 'dovecot-policy-http',
  async open(tally) {
    const dir = mkdtempSync(join(tmpdir(), 'doorman-fuzz-dovecot-'));
    // Errors the server logs are failures too: fastify logs a 500's cause at level error.
    const logged: string[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => void logged.push(line) });
    const config = parseConfig(
      {
        anvil: { enabled: false },
        admin: { listen: null },
        metrics: { listen: '127.0.0.1:0' },
        state: stateIn(dir),
        // Random addresses fill the engine's table: a small one keeps the heap flat over a million requests.
        engine: { max_entries: 20_000 },
        dovecot_policy: { listen: '127.0.0.1:0', path: PATH, api_key: KEY, basic: BASIC },
        services: {
          imap: { limits: { auth_rate: 20, auth_failure_rate: 5 }, auth_failure_ban: '2s', max_countries_per_login: { countries: 1, action: 'refuse' } },
          pop3: { mode: 'dry-run', limits: { auth_rate: 3 } },
        },
      },
      'fuzz',
    );
    const countries = { country: (ip: string) => (ip.startsWith('203.') ? 'DE' : ip.startsWith('198.') ? 'JP' : null) };
    const daemon = await startDaemon(config, log, { countries });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    return {
      properties: [
        {
          name: 'any body, query, credentials and content type: a policy reply or a coded 4xx',
          property: fc.asyncProperty(requestArb, async (r) => {
            const headers = r.type === '' ? { ...r.auth } : { ...r.auth, 'content-type': r.type };
            const word = judge(await post(agent, daemon.dovecotPort, r.query, headers, r.body, r.cuts, r.chunked));
            if (logged.length > 0) throw new Error(`the server logged an error: ${logged.join('').slice(0, 600)}`);
            tally.add(r.body.length > BODY_LIMIT ? 'oversize' : 'request', word);
          }),
        },
      ],
      async close() {
        agent.destroy();
        await daemon.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};
