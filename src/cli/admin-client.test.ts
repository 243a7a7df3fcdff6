import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { AdminClient, AdminError, EXIT } from './admin-client.js';

/** A stand-in API: each test sets `handler`; every request is kept with its body. */
let handler: (req: IncomingMessage, body: string, res: ServerResponse) => void = (_q, _b, res) => res.end();
const seen: Array<{ method: string; url: string; auth: string | undefined; type: string | undefined; body: string }> = [];
let server: Server;
let base: string;

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, type: req.headers['content-type'], body });
      handler(req, body, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const send = (status: number, body: unknown, type = 'application/json') => (_q: IncomingMessage, _b: string, res: ServerResponse) => {
  res.writeHead(status, { 'content-type': type });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};
const apiError = (status: number, code: string, message: string) => send(status, { error: { code, message } });

async function failure(p: Promise<unknown>): Promise<AdminError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AdminError, `an AdminError, got ${String(err)}`);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return err;
  }
  assert.fail('expected a failure');
}

test('requests: the bearer token, the query without unset fields, a JSON body; the answer parsed', async () => {
  seen.length = 0;
  handler = send(200, { total: 0, items: [] });
  const c = new AdminClient({ url: `${base}/`, token: 's3cret-token-0123456789' });
  assert.deepEqual(await c.get('/api/connections', { service: 'imap', address: '192.0.2.0/24', country: undefined, limit: 5 }), { total: 0, items: [] });
  await c.post('/api/kick', { target: '192.0.2.7', dry_run: true });
  assert.deepEqual(seen[0], { method: 'GET', url: '/api/connections?service=imap&address=192.0.2.0%2F24&limit=5', auth: 'Bearer s3cret-token-0123456789', type: undefined, body: '' });
  assert.deepEqual(seen[1], { method: 'POST', url: '/api/kick', auth: 'Bearer s3cret-token-0123456789', type: 'application/json', body: '{"target":"192.0.2.7","dry_run":true}' });
  seen.length = 0;
  await new AdminClient({ url: `${base}/doorman`, token: null }).delete('/api/bans', { target: '192.0.2.7' });
  assert.deepEqual([seen[0]?.method, seen[0]?.url, seen[0]?.auth], ['DELETE', '/doorman/api/bans?target=192.0.2.7', undefined], 'a path prefix is kept; no token, no header');
});

test('401: without a token, says how to give one; with one, names where it came from', async () => {
  handler = apiError(401, 'DOORMAN_ERR_UNAUTHORIZED', 'a valid token is required');
  const none = await failure(new AdminClient({ url: base, token: null }).get('/api/status'));
  assert.deepEqual([none.exitCode, none.status, none.code], [EXIT.refused, 401, 'DOORMAN_ERR_UNAUTHORIZED']);
  assert.match(none.message, /^the daemon requires a token \(a valid token is required\): pass --token, set DOORMAN_TOKEN/);
  const wrong = await failure(new AdminClient({ url: base, token: 'nope-nope-nope-nope', tokenSource: '$DOORMAN_TOKEN' }).get('/api/status'));
  assert.equal(wrong.message, 'the daemon refused the token from $DOORMAN_TOKEN (a valid token is required)');
});

test('4xx: the server\'s own message; 409 says a guardrail changed nothing; 5xx says the daemon failed', async () => {
  handler = apiError(400, 'DOORMAN_ERR_SERVICE', 'no service "nope" in the configuration');
  const e400 = await failure(new AdminClient({ url: base, token: null }).post('/api/countries/nope/connect/block', { country: 'RU' }));
  assert.deepEqual([e400.message, e400.code, e400.exitCode], ['no service "nope" in the configuration', 'DOORMAN_ERR_SERVICE', EXIT.refused]);
  handler = apiError(409, 'DOORMAN_ERR_GUARDRAIL', 'refused: 127.0.0.0/8 covers your own address\n127.0.0.1');
  const e409 = await failure(new AdminClient({ url: base, token: null }).post('/api/bans', {}));
  assert.equal(e409.message, 'refused: 127.0.0.0/8 covers your own address 127.0.0.1 (a guardrail; nothing was changed)');
  handler = apiError(404, 'DOORMAN_ERR_NOT_FOUND', 'no ban on 192.0.2.7');
  assert.equal((await failure(new AdminClient({ url: base, token: null }).delete('/api/bans', { target: '192.0.2.7' }))).message, 'no ban on 192.0.2.7');
  handler = apiError(500, 'DOORMAN_ERR_STATE_WRITE', 'state file: ENOSPC');
  const e500 = await failure(new AdminClient({ url: base, token: null }).post('/api/bans', {}));
  assert.equal(e500.message, 'the daemon could not do it: state file: ENOSPC (HTTP 500 on POST /api/bans)');
  assert.equal(e500.code, 'DOORMAN_ERR_STATE_WRITE');
  handler = apiError(500, 'DOORMAN_ERR_OF_ANOTHER_VERSION', 'state file: ENOSPC');
  const other = await failure(new AdminClient({ url: base, token: null }).post('/api/bans', {}));
  assert.deepEqual([other.code, other.message], ['DOORMAN_ERR_HTTP_500', e500.message], 'a code this catalogue does not know: the bare status, the same words');
  handler = send(502, '<html>bad gateway</html>', 'text/html');
  assert.equal((await failure(new AdminClient({ url: base, token: null }).get('/api/status'))).message, `${base} answered GET /api/status with HTTP 502 and no admin API error`);
});

test('something other than the admin API: not JSON, a redirect, a bare 404 (exit 3)', async () => {
  const src = { urlSource: 'admin.listen is 127.0.0.1:8025 in /etc/doorman.yaml' };
  handler = send(200, '<html>hello</html>', 'text/html; charset=utf-8');
  const html = await failure(new AdminClient({ url: base, token: null, ...src }).get('/api/status'));
  assert.equal(html.exitCode, EXIT.unreachable);
  assert.equal(html.message, `${base} answered GET /api/status with text/html, not JSON: is that Doorman's admin API (admin.listen is 127.0.0.1:8025 in /etc/doorman.yaml)?`);
  handler = (_q, _b, res) => {
    res.writeHead(302, { location: 'https://elsewhere.example/' });
    res.end();
  };
  assert.match((await failure(new AdminClient({ url: base, token: 'tok-tok-tok-tok-tok' }).get('/api/status'))).message, /with a redirect \(HTTP 302 to https:\/\/elsewhere\.example\/\)/);
  handler = send(404, 'Not Found', 'text/plain');
  const e404 = await failure(new AdminClient({ url: base, token: null }).get('/api/status'));
  assert.deepEqual([e404.exitCode, /HTTP 404 and no admin API error/.test(e404.message)], [EXIT.unreachable, true]);
});

test('no daemon: connection refused names the URL and where it came from (exit 3)', async () => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const e = await failure(new AdminClient({ url: `http://127.0.0.1:${port}`, token: null, urlSource: 'admin.listen is 127.0.0.1:8025 in /etc/doorman.yaml' }).get('/api/status'));
  assert.equal(e.exitCode, EXIT.unreachable);
  assert.equal(e.message, `cannot reach the daemon at http://127.0.0.1:${port} (connection refused): is the daemon running? admin.listen is 127.0.0.1:8025 in /etc/doorman.yaml`);
});

test('a daemon that never answers: the deadline ends the request (exit 3)', async () => {
  handler = () => {};
  const started = Date.now();
  const e = await failure(new AdminClient({ url: base, token: null, timeoutMs: 200 }).get('/api/status'));
  assert.ok(Date.now() - started < 2000, 'ended by the deadline');
  assert.equal(e.exitCode, EXIT.unreachable);
  assert.equal(e.message, `no answer from the daemon at ${base} within 200 ms (GET /api/status): is it stuck or overloaded? (--timeout sets the deadline)`);
  // A body that starts and never ends is under the same deadline.
  handler = (_q, _b, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"total":');
  };
  assert.match((await failure(new AdminClient({ url: base, token: null, timeoutMs: 200 }).get('/api/connections'))).message, /^no answer .* within 200 ms/);
  server.closeAllConnections();
});
