/**
 * Passwords in clear through the guard proxy, on a real Dovecot of each
 * generation that forbids cleartext logins without TLS.
 *
 * Dovecot 2.4 counts a session that arrives through a trusted PROXY hop as
 * "secured" unless `ssl = required` (src/login-common/client-common.c: a
 * proxied connection is secured when the PROXY v2 SSL bit is set, when the
 * header's client and destination addresses are equal, or when ssl is not
 * `required`), and a secured session may LOGIN in clear whatever
 * auth_allow_cleartext says. Dovecot 2.3 did not (secured only with the SSL
 * bit or a client in login_trusted_networks). So the same guard proxy in
 * front of 2.4 with the defaults lets a client on the internet send its
 * password in clear; README says to set `ssl = required`, and these tests
 * show each side on the real servers:
 * - 2.3, disable_plaintext_auth = yes: LOGIN in clear through the proxy is
 *   refused, and taken after STARTTLS through the proxy;
 * - 2.4, auth_allow_cleartext = no, ssl = yes: LOGIN in clear is taken (the
 *   hazard; if a later Dovecot stops doing this, this test says so);
 * - 2.4, ssl = required: refused in clear, taken after STARTTLS through the
 *   proxy, and a client on the mail host itself, straight to Dovecot, is
 *   still secured.
 *
 * The client binds 127.0.0.2 and the proxy listens on 127.0.0.1, so the PROXY
 * header's client and destination differ, as for a client on the internet
 * (with equal addresses 2.4 takes the client for one on the same host).
 * Doorman does not end TLS: STARTTLS and the TLS records pass through it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { DOVECOT_GENERATION, dovecotUnavailableReason, startDovecot, type DovecotGeneration } from '../helpers/dovecot.js';
import { startGuard } from '../helpers/guard.js';
import { perGeneration } from '../helpers/skip.js';

const CLIENT_ADDRESS = '127.0.0.2';
/** Every read from Dovecot; it answers in milliseconds, so this only bounds a failure. */
const REPLY_TIMEOUT_MS = 5000;

/** A self-signed certificate and key in a fresh dir under `root` (the Debian 13 root for 2.4): host paths and the paths Dovecot sees. */
async function makeCert(t: TestContext, root: string): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(root === '' ? tmpdir() : join(root, 'tmp'), 'dc-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=mx.test'], { timeout: 20_000 });
  return { cert: cert.slice(root.length), key: key.slice(root.length) };
}

/** Each generation's words for "no cleartext login without TLS", with TLS on and `ssl` as given. */
function tlsConf(generation: DovecotGeneration, ssl: 'yes' | 'required', c: { cert: string; key: string }): string {
  return generation === '2.3'
    ? [`ssl = ${ssl}`, `ssl_cert = <${c.cert}`, `ssl_key = <${c.key}`, 'disable_plaintext_auth = yes'].join('\n')
    : [`ssl = ${ssl}`, `ssl_server_cert_file = ${c.cert}`, `ssl_server_key_file = ${c.key}`, 'auth_allow_cleartext = no'].join('\n');
}

/** A minimal IMAP client that can STARTTLS: tagged commands, untagged lines collected. */
class Imap {
  private socket: Socket;
  private buf = '';
  private waiting: (() => void) | null = null;
  private tag = 0;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.listen();
  }

  static async open(port: number, localAddress?: string): Promise<{ imap: Imap; greeting: string }> {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const imap = new Imap(socket);
    return { imap, greeting: await imap.line() };
  }

  private listen(): void {
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => {
      this.buf += d;
      this.waiting?.();
    });
    this.socket.on('close', () => this.waiting?.());
    this.socket.on('error', () => undefined);
  }

  /** The next line, without its CRLF. */
  async line(): Promise<string> {
    const until = Date.now() + REPLY_TIMEOUT_MS;
    for (;;) {
      const nl = this.buf.indexOf('\r\n');
      if (nl !== -1) {
        const l = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 2);
        return l;
      }
      if (this.socket.destroyed) throw new Error(`connection closed; unread: ${JSON.stringify(this.buf)}`);
      const left = until - Date.now();
      if (left <= 0) throw new Error(`no line within ${REPLY_TIMEOUT_MS} ms; unread: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = null;
    }
  }

  /** Sends a command and returns its tagged reply line ("a1 OK …"), skipping untagged ones. */
  async command(text: string): Promise<string> {
    const tag = `a${++this.tag}`;
    this.socket.write(`${tag} ${text}\r\n`);
    for (;;) {
      const l = await this.line();
      if (l.startsWith(`${tag} `)) return l.slice(tag.length + 1);
    }
  }

  /** STARTTLS, then TLS on the same socket (the certificate is self-signed). */
  async startTls(): Promise<string> {
    const reply = await this.command('STARTTLS');
    if (!reply.startsWith('OK')) return reply;
    const plain = this.socket;
    plain.removeAllListeners('data');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'mx.test' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.buf = '';
    this.listen();
    return reply;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Dovecot of `generation` forbidding cleartext logins without TLS (`ssl` as given), and Doorman's IMAP guard proxy (PROXY v2) in front. */
async function rig(t: TestContext, generation: DovecotGeneration, ssl: 'yes' | 'required') {
  const facts = DOVECOT_GENERATION[generation];
  const cert = await makeCert(t, facts.root);
  const dovecot = await startDovecot({ generation, extraConf: tlsConf(generation, ssl, cert) });
  t.after(() => dovecot.stop());
  const { daemon } = await startGuard(t, {
    imap: { proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${dovecot.ports.imapProxy}`, proxy_protocol: 'v2', hostname: 'mx.test' } },
  });
  const port = daemon.proxies[0]?.port as number;
  const open = async (p = port, from: string | undefined = CLIENT_ADDRESS) => {
    const r = await Imap.open(p, from);
    t.after(() => r.imap.destroy());
    return r;
  };
  return { dovecot, open };
}

const PLAIN_REFUSED = /^NO \[PRIVACYREQUIRED\] /;

for (const generation of ['2.3', '2.4'] as const) {
  const { label } = DOVECOT_GENERATION[generation];
  const { skip: SKIP } = perGeneration(label, dovecotUnavailableReason(generation), 'the cleartext tests');

  if (generation === '2.3') {
    test(`${label}, disable_plaintext_auth = yes: a LOGIN in clear through the guard proxy is refused, and taken after STARTTLS through it`, { skip: SKIP }, async (t) => {
      const { open, dovecot } = await rig(t, generation, 'yes');
      const { imap, greeting } = await open();
      assert.match(greeting, /LOGINDISABLED/, 'the greeting already says so');
      assert.match(await imap.command('LOGIN alice secret'), PLAIN_REFUSED);
      assert.match(await imap.startTls(), /^OK /);
      assert.match(await imap.command('LOGIN alice secret'), /^OK /);
      await dovecot.waitForLog(/Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.2, .*TLS/);
    });
    continue;
  }

  test(`${label}, auth_allow_cleartext = no, ssl = yes: a LOGIN in clear through the guard proxy is taken (why README says ssl = required)`, { skip: SKIP }, async (t) => {
    const { open, dovecot } = await rig(t, generation, 'yes');
    const { imap, greeting } = await open();
    assert.doesNotMatch(greeting, /LOGINDISABLED/, 'a proxied session counts as secured');
    assert.match(await imap.command('LOGIN alice secret'), /^OK /, 'the password crossed in clear and was taken');
    await dovecot.waitForLog(/Logged in: user=<alice>, method=PLAIN, rip=127\.0\.0\.2, .*secured/);
  });

  test(`${label}, ssl = required: a LOGIN in clear through the guard proxy is refused, taken after STARTTLS through it; on the mail host itself still taken`, { skip: SKIP }, async (t) => {
    const { open, dovecot } = await rig(t, generation, 'required');
    const { imap, greeting } = await open();
    assert.match(greeting, /LOGINDISABLED/);
    const refused = await imap.command('LOGIN alice secret');
    assert.match(refused, PLAIN_REFUSED, 'no login before TLS');
    assert.match(await imap.startTls(), /^OK /);
    assert.match(await imap.command('LOGIN alice secret'), /^OK /);
    await dovecot.waitForLog(/Logged in: user=<alice>, method=PLAIN, rip=127\.0\.0\.2, .*TLS/);
    // Straight to Dovecot from the same host: a local connection is secured.
    const direct = await open(dovecot.ports.imap, '127.0.0.1');
    assert.match(await direct.imap.command('LOGIN bob secret'), /^OK /);
  });
}
