/**
 * The nginx auth_http codec (src/protocols/nginx-auth.ts, nginx-auth-answer.ts)
 * against a real nginx mail proxy, once per generation (1.22 on the host,
 * 1.26 in the Debian 13 root; see test/helpers/nginx.ts). A stand-in
 * auth_http server written here with node:http decodes every request with
 * the codec and answers what the test tells it, encoded by the codec; a
 * relay in front of it keeps the bytes both ways. Stand-in IMAP backends
 * (test/helpers/fake-backend.ts, taught nginx's LOGIN with literals) show
 * where nginx sends a session. Clients bind their own loopback address
 * (127.0.0.5 and up), so Client-IP is theirs and not nginx's.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { test, type TestContext } from 'node:test';
import { NGINX_ANSWER_BUFFER, encodeNginxAuthAnswer, nginxRefusal, type NginxAuthAnswer } from '../../src/protocols/nginx-auth-answer.js';
import { decodeNginxAuthRequest, headerPairs, type NginxAuthRequest } from '../../src/protocols/nginx-auth.js';
import { startFakeBackend, type BackendSession, type FakeBackend } from '../helpers/fake-backend.js';
import { ImapTestClient, Pop3TestClient } from '../helpers/mail-clients.js';
import { NGINX_GENERATION, NGINX_GENERATIONS, nginxUnavailableReason, nginxVersion, startNginxMail, type NginxGeneration } from '../helpers/nginx.js';
import { RawClient } from '../helpers/raw-client.js';
import { perGeneration } from '../helpers/skip.js';
import { SmtpTestClient } from '../helpers/smtp.js';

/** What nginx 1.22.1 and 1.26.3 sent for an IMAP LOGIN, header by header (the values vary). */
const IMAP_LOGIN_HEADERS = ['Host', 'Auth-Method', 'Auth-User', 'Auth-Pass', 'Auth-Protocol', 'Auth-Login-Attempt', 'Client-IP'];
/** And for SMTP AUTH (Client-Host is [UNAVAILABLE]: no resolver configured) and at RCPT TO with smtp_auth none. */
const SMTP_AUTH_HEADERS = [...IMAP_LOGIN_HEADERS.slice(0, 5), 'Auth-Login-Attempt', 'Client-IP', 'Client-Host'];
const SMTP_NONE_HEADERS = [...SMTP_AUTH_HEADERS, 'Auth-SMTP-Helo', 'Auth-SMTP-From', 'Auth-SMTP-To'];

interface Asked {
  readonly request: NginxAuthRequest | null;
  readonly error: string | null;
  readonly at: number;
}

interface Exchange {
  /** What nginx sent, byte for byte. */
  request: Buffer;
  /** What the stand-in answered, status line and Node's own headers included. */
  response: Buffer;
}

/**
 * The stand-in auth_http server: decodes with the codec, answers what
 * `decide` returns, encoded by the codec. A request the codec refuses is
 * recorded and answered with a refusal.
 */
async function startAuthServer(t: TestContext) {
  const asked: Asked[] = [];
  let decide: (r: NginxAuthRequest) => NginxAuthAnswer = () => ({ status: 'refuse', text: 'no decision in this test', waitSec: 0, smtpCode: null });
  const server: HttpServer = createHttpServer((req: IncomingMessage, res) => {
    let answer: NginxAuthAnswer;
    try {
      const request = decodeNginxAuthRequest({ method: req.method ?? '', path: req.url ?? '', headers: headerPairs(req.rawHeaders) });
      asked.push({ request, error: null, at: Date.now() });
      answer = decide(request);
    } catch (err) {
      asked.push({ request: null, error: (err as Error).message, at: Date.now() });
      answer = { status: 'refuse', text: 'Internal error', waitSec: 0, smtpCode: null };
    }
    res.writeHead(200, encodeNginxAuthAnswer(answer).flat());
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  // The relay nginx talks to: the same bytes, kept.
  const exchanges: Exchange[] = [];
  const relay: Server = createServer((down) => {
    const x: Exchange = { request: Buffer.alloc(0), response: Buffer.alloc(0) };
    exchanges.push(x);
    const up = connect(port, '127.0.0.1');
    down.on('data', (d: Buffer) => (x.request = Buffer.concat([x.request, d])));
    up.on('data', (d: Buffer) => (x.response = Buffer.concat([x.response, d])));
    down.pipe(up).pipe(down);
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    await new Promise<void>((resolve) => relay.close(() => resolve()));
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    url: `http://127.0.0.1:${(relay.address() as { port: number }).port}/auth`,
    asked,
    exchanges,
    answer(f: (r: NginxAuthRequest) => NginxAuthAnswer) {
      decide = f;
    },
  };
}

/** The header names of one request, in the order nginx sent them. */
function headerNames(raw: Buffer): string[] {
  return raw.toString('latin1').split('\r\n').slice(1).filter((l) => l !== '').map((l) => l.slice(0, l.indexOf(':')));
}

interface ImapLogin {
  readonly user: Buffer;
  readonly password: Buffer;
}

/**
 * Answers nginx's side of an IMAP login on a stand-in backend session:
 * `TAG LOGIN {n}`, the user as a literal with ` {m}`, the password as a
 * literal, each literal after a `+` continuation; then OK, and LOGOUT.
 */
function serveImap(s: BackendSession, logins: ImapLogin[]): void {
  let at = 0;
  let step: 'login' | 'user' | 'pass' | 'session' = 'login';
  let tag = '';
  let size = 0;
  let user = Buffer.alloc(0);
  const line = (): string | null => {
    const end = s.data.indexOf('\r\n', at);
    if (end < 0) return null;
    const l = s.data.subarray(at, end).toString('latin1');
    at = end + 2;
    return l;
  };
  const advance = (): void => {
    for (;;) {
      if (step === 'login' || step === 'session') {
        const l = line();
        if (l === null) return;
        const m = /^(\S+) LOGIN \{(\d+)\}$/.exec(l);
        if (step === 'login' && m) {
          [tag, size] = [m[1] as string, Number(m[2])];
          step = 'user';
          s.socket.write('+ go ahead\r\n');
        } else if (/^\S+ LOGOUT$/i.test(l)) s.socket.end(`* BYE stand-in\r\n${l.split(' ')[0]} OK LOGOUT done\r\n`);
        else s.socket.write(`${l.split(' ')[0]} BAD stand-in knows no more\r\n`);
      } else {
        // A literal of `size` bytes, then the rest of its line.
        const end = s.data.indexOf('\r\n', at + size);
        if (end < 0) return;
        const literal = s.data.subarray(at, at + size);
        const rest = s.data.subarray(at + size, end).toString('latin1');
        at = end + 2;
        if (step === 'user') {
          user = Buffer.from(literal);
          size = Number(/^ \{(\d+)\}$/.exec(rest)?.[1] ?? -1);
          step = 'pass';
          s.socket.write('+ go ahead\r\n');
        } else {
          logins.push({ user, password: Buffer.from(literal) });
          if (literal.toString() === 'wrong') {
            s.socket.end(`${tag} NO [AUTHENTICATIONFAILED] stand-in: wrong password\r\n`);
            return;
          }
          step = 'session';
          s.socket.write(`${tag} OK [CAPABILITY IMAP4rev1] stand-in: logged in\r\n`);
        }
      }
    }
  };
  s.socket.on('data', () => setImmediate(advance));
  advance();
}

async function imapBackend(t: TestContext): Promise<{ backend: FakeBackend; logins: ImapLogin[] }> {
  const backend = await startFakeBackend({ proxy: false, greeting: '* OK [CAPABILITY IMAP4rev1] stand-in ready\r\n' });
  const logins: ImapLogin[] = [];
  let open = true;
  void (async () => {
    while (open) serveImap(await backend.nextSession(), logins);
  })();
  t.after(async () => {
    open = false;
    await backend.close();
  });
  return { backend, logins };
}

/** Clients destroyed after the test, whatever happened. */
function clients(t: TestContext) {
  const all: Array<{ destroy(): void }> = [];
  t.after(() => all.forEach((c) => c.destroy()));
  return async <C extends { destroy(): void }>(p: Promise<C>): Promise<C> => {
    const c = await p;
    all.push(c);
    return c;
  };
}

async function rig(t: TestContext, generation: NginxGeneration) {
  const auth = await startAuthServer(t);
  const nginx = await startNginxMail({
    generation,
    authHttp: auth.url,
    servers: [
      { protocol: 'imap' },
      { protocol: 'pop3' },
      { protocol: 'smtp' },
      { protocol: 'smtp', auth: ['none'] },
    ],
  });
  t.after(() => nginx.stop());
  return { auth, nginx, smtpNonePort: nginx.ports[3] as number, track: clients(t) };
}

for (const generation of NGINX_GENERATIONS) {
  const { skip: SKIP, title } = perGeneration(NGINX_GENERATION[generation].label, nginxUnavailableReason(generation), 'the nginx auth_http codec tests');

  test(title('an IMAP LOGIN through nginx reaches the codec: user, protocol, client address, attempt, and the password with %, space, +, quote and backslash'), { skip: SKIP }, async (t) => {
    const { auth, nginx, track } = await rig(t, generation);
    assert.match(nginxVersion(generation), generation === '1.22' ? /^1\.22\./ : /^1\.26\./);
    const password = 'p%a ss+w"o\\rd%2B';
    auth.answer(() => ({ status: 'refuse', text: 'Not today', waitSec: 0, smtpCode: null }));
    const c = await track(ImapTestClient.open('127.0.0.1', nginx.port('imap'), { localAddress: '127.0.0.5' }));
    const reply = await c.login('alice@example.test', password);
    assert.equal(reply.tagged, 'A1 NO Not today');
    assert.equal(auth.asked.length, 1);
    const { request: r, error } = auth.asked[0] as Asked;
    assert.equal(error, null);
    assert.ok(r !== null);
    assert.equal(r.method, 'plain');
    assert.equal(r.protocol, 'imap');
    assert.equal(r.user, 'alice@example.test');
    assert.equal(r.clientIp, '127.0.0.5');
    assert.equal(r.clientHost, null, 'IMAP sessions have no Client-Host');
    assert.equal(r.loginAttempt, 1);
    assert.equal(r.path, '/auth');
    assert.ok(r.password.matches(password), 'the password decoded to what the client typed');
    assert.ok(!r.password.matches(password.replace('+', ' ')), '"+" is a plus, not a space');
    assert.equal(JSON.stringify(r).includes('ss+w'), false, 'the password is nowhere in the JSON');
    const x = auth.exchanges[0] as Exchange;
    assert.deepEqual(headerNames(x.request), IMAP_LOGIN_HEADERS);
    assert.match(x.request.toString('latin1'), /^GET \/auth HTTP\/1\.0\r\n/);
    assert.ok(x.request.includes('Auth-Pass: p%25a%20ss+w"o\\rd%252B\r\n'), x.request.toString('latin1'));
    assert.ok(x.response.length < NGINX_ANSWER_BUFFER, `the whole answer, ${x.response.length} bytes, fits nginx's buffer`);
  });

  test(title('UTF-8 and a tab in an IMAP literal arrive as the same bytes; a password with DEL never reaches the codec'), { skip: SKIP }, async (t) => {
    const { auth, nginx, track } = await rig(t, generation);
    auth.answer(() => ({ status: 'refuse', text: 'Not today', waitSec: 0, smtpCode: null }));
    const password = 'pässwörd\tzwei';
    const c = await track(RawClient.open(nginx.port('imap'), { localAddress: '127.0.0.6' }));
    await c.waitFor(/^\* OK .*\r\n/);
    const bytes = Buffer.from(password, 'utf8');
    c.write(`a1 LOGIN "jürgen" {${bytes.length}}\r\n`);
    await c.waitFor(/\+ .*\r\n/);
    c.write(Buffer.concat([bytes, Buffer.from('\r\n')]));
    await c.waitFor(/a1 NO Not today\r\n/);
    const r = auth.asked[0]?.request;
    assert.ok(r);
    assert.equal(r.user, 'jürgen');
    assert.ok(r.password.matches(password));
    assert.ok((auth.exchanges[0] as Exchange).request.includes(Buffer.from('Auth-Pass: p\u00e4ssw\u00f6rd%09zwei\r\n', 'utf8')));

    // DEL (7F) goes unescaped; Node's HTTP parser refuses the header with a 400,
    // which nginx does not read as an answer: its client gets an internal error.
    const d = await track(RawClient.open(nginx.port('imap'), { localAddress: '127.0.0.6' }));
    await d.waitFor(/^\* OK .*\r\n/);
    d.write('a1 LOGIN bob {3}\r\n');
    await d.waitFor(/\+ .*\r\n/);
    d.write(Buffer.from([0x61, 0x7f, 0x62, 0x0d, 0x0a]));
    await d.waitFor(/\* BAD internal server error\r\n/);
    await d.closed();
    assert.equal(auth.asked.length, 1, 'the codec never saw it');
    assert.match((auth.exchanges[1] as Exchange).response.toString('latin1'), /^HTTP\/1\.1 400 Bad Request\r\n/);
  });

  test(title('an OK names the backend: nginx logs in there with the client\'s credentials, not at the other; a password the backend refuses is never reported back'), { skip: SKIP }, async (t) => {
    const { auth, nginx, track } = await rig(t, generation);
    const a = await imapBackend(t);
    const b = await imapBackend(t);
    auth.answer((r) => ({ status: 'ok', server: '127.0.0.1', port: r.user === 'bob' ? b.backend.port : a.backend.port }));
    const c = await track(ImapTestClient.open('127.0.0.1', nginx.port('imap'), { localAddress: '127.0.0.7' }));
    const reply = await c.login('bob', 'b0b pass');
    assert.equal(reply.status, 'OK', reply.tagged);
    assert.match(reply.tagged, /stand-in: logged in/, 'the backend\'s own OK comes through');
    assert.equal(b.logins.length, 1);
    assert.equal(b.logins[0]?.user.toString(), 'bob');
    assert.equal(b.logins[0]?.password.toString(), 'b0b pass');
    assert.equal(a.backend.sessions.length, 0, 'the other backend saw nothing');
    const logout = await c.command('LOGOUT');
    assert.equal(logout.status, 'OK', 'the session is the backend\'s now');

    // The backend refuses the password: the client sees its NO, and the auth server hears nothing of it.
    const d = await track(ImapTestClient.open('127.0.0.1', nginx.port('imap'), { localAddress: '127.0.0.7' }));
    const refused = await d.login('bob', 'wrong');
    assert.equal(refused.tagged, 'A1 NO [AUTHENTICATIONFAILED] stand-in: wrong password');
    await d.waitClosed(2000);
    assert.equal(auth.asked.length, 2, 'asked once per login, and never told how it ended');

  });

  test(title('refusals in each protocol\'s words: IMAP "NO [UNAVAILABLE] …", POP3 "-ERR [SYS/TEMP] …", SMTP with Auth-Error-Code, then nginx closes'), { skip: SKIP }, async (t) => {
    const { auth, nginx, smtpNonePort, track } = await rig(t, generation);
    const refusal = { temporary: true, reason: '127.0.0.8 is banned for 30 s more (5 AUTH failures)', retryAfterSec: 30 };
    auth.answer((r) => nginxRefusal(r.protocol, refusal));

    const imap = await track(ImapTestClient.open('127.0.0.1', nginx.port('imap'), { localAddress: '127.0.0.8' }));
    const no = await imap.login('alice', 'secret');
    assert.equal(no.tagged, 'A1 NO [UNAVAILABLE] 127.0.0.8 is banned for 30 s more (5 AUTH failures), try again in 30 s');
    await imap.waitClosed(2000);

    const pop3 = await track(Pop3TestClient.open('127.0.0.1', nginx.port('pop3'), { localAddress: '127.0.0.8' }));
    const err = await pop3.login('alice', 'secret');
    assert.equal(err.line, '-ERR [SYS/TEMP] 127.0.0.8 is banned for 30 s more (5 AUTH failures), try again in 30 s');
    await pop3.waitClosed(2000);

    const smtp = await track(SmtpTestClient.open('127.0.0.1', nginx.port('smtp'), 5000, '127.0.0.8'));
    assert.equal((await smtp.command('EHLO client.example')).code, 250);
    const plain = Buffer.from('\0carol\0secret').toString('base64');
    const r421 = await smtp.command(`AUTH PLAIN ${plain}`);
    assert.deepEqual(r421.lines, ['421 4.7.0 127.0.0.8 is banned for 30 s more (5 AUTH failures), try again in 30 s']);
    await smtp.waitClosed(2000);
    assert.deepEqual(headerNames((auth.exchanges[2] as Exchange).request), SMTP_AUTH_HEADERS);
    assert.equal(auth.asked[2]?.request?.clientHost, '[UNAVAILABLE]');
    assert.equal(auth.asked[2]?.request?.user, 'carol');

    // A permanent refusal; and without Auth-Error-Code nginx says 535 5.7.0.
    auth.answer((r) => (r.user === 'dave' ? { status: 'refuse', text: 'Go away', waitSec: 0, smtpCode: null } : nginxRefusal(r.protocol, { temporary: false, reason: 'Access from your country is not allowed', retryAfterSec: 0 })));
    const s2 = await track(SmtpTestClient.open('127.0.0.1', nginx.port('smtp'), 5000, '127.0.0.8'));
    await s2.command('EHLO client.example');
    assert.deepEqual((await s2.command(`AUTH PLAIN ${plain}`)).lines, ['554 5.7.1 Access from your country is not allowed']);
    const s3 = await track(SmtpTestClient.open('127.0.0.1', nginx.port('smtp'), 5000, '127.0.0.8'));
    await s3.command('EHLO client.example');
    await s3.command('AUTH LOGIN');
    await s3.command(Buffer.from('dave').toString('base64'));
    const r535 = await s3.command(Buffer.from('pw').toString('base64'));
    assert.deepEqual(r535.lines, ['535 5.7.0 Go away']);
    assert.equal(auth.asked.at(-1)?.request?.method, 'plain', 'AUTH LOGIN is "plain" to the auth server');

    // smtp_auth none: asked at RCPT TO, with the HELO name and the whole MAIL and RCPT lines.
    const s4 = await track(SmtpTestClient.open('127.0.0.1', smtpNonePort, 5000, '127.0.0.9'));
    await s4.command('EHLO relay.example');
    assert.equal((await s4.command('MAIL FROM:<a@b.example> SIZE=10')).code, 250);
    const rcpt = await s4.command('RCPT TO:<c@d.example>');
    assert.deepEqual(rcpt.lines, ['554 5.7.1 Access from your country is not allowed']);
    const none = auth.asked.at(-1)?.request;
    assert.equal(none?.method, 'none');
    assert.deepEqual(none?.smtp, { helo: 'relay.example', from: 'MAIL FROM:<a@b.example> SIZE=10', to: 'RCPT TO:<c@d.example>' });
    assert.equal(none?.user, '');
    assert.equal(none?.password.byteLength, 0);
    assert.deepEqual(headerNames((auth.exchanges.at(-1) as Exchange).request), SMTP_NONE_HEADERS);
    assert.ok(auth.asked.every((a) => a.error === null), JSON.stringify(auth.asked.map((a) => a.error)));
  });

  test(title('Auth-Wait: a refusal is held N s, then sent, and the session may try again; WAIT asks again after N s with the same attempt'), { skip: SKIP }, async (t) => {
    const { auth, nginx, track } = await rig(t, generation);
    const { backend, logins } = await imapBackend(t);
    auth.answer(() => nginxRefusal('imap', { temporary: true, reason: 'Too many logins', retryAfterSec: 1 }, 1));
    const c = await track(ImapTestClient.open('127.0.0.1', nginx.port('imap'), { localAddress: '127.0.0.10' }));
    const t0 = Date.now();
    const first = await c.login('alice', 'one');
    const held = Date.now() - t0;
    assert.equal(first.tagged, 'A1 NO [UNAVAILABLE] Too many logins, try again in 1 s');
    assert.ok(held >= 900, `held ${held} ms before the NO`);
    assert.equal(c.isClosed, false, 'the session stays open');

    // The next attempt: first WAIT 1 s, then OK.
    let n = 0;
    auth.answer(() => (n++ === 0 ? { status: 'wait', waitSec: 1 } : { status: 'ok', server: '127.0.0.1', port: backend.port }));
    const t1 = Date.now();
    const second = await c.login('alice', 'two');
    assert.equal(second.status, 'OK', second.tagged);
    const [, waited, again] = auth.asked;
    assert.equal(waited?.request?.loginAttempt, 2, 'a refusal with Auth-Wait lets the client try again: attempt 2');
    assert.equal(again?.request?.loginAttempt, 2, 'WAIT asks again with the same attempt');
    assert.ok((again?.at ?? 0) - (waited?.at ?? 0) >= 900, `asked again ${(again?.at ?? 0) - (waited?.at ?? 0)} ms later`);
    assert.ok(Date.now() - t1 >= 900);
    assert.equal(logins[0]?.password.toString(), 'two');
  });
}
