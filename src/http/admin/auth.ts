/**
 * Who may use the admin API.
 *
 * With a token (admin.token, or the first line of admin.token_file read once
 * at start), every route but `GET /health` needs `Authorization: Bearer
 * TOKEN` or the `doorman_token` cookie. A browser gets the cookie by opening
 * `/?token=TOKEN` once: the token is checked, the cookie set (HttpOnly,
 * SameSite=Strict, Path=/) and the browser sent on to `/`, which drops the
 * token from the address bar and the history.
 *
 * Without a token the configuration allows only a loopback listen address,
 * and requests are taken from anyone who can reach it, provided their Host
 * header names a loopback address: a web page cannot then reach the API by
 * making its own name resolve to 127.0.0.1 (DNS rebinding).
 *
 * SECURITY: tokens are compared through SHA-256 digests with
 * timingSafeEqual, so neither the content nor the length leaks by timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
// For its declarations: req.cookies and reply.setCookie (the plugin is registered by ./server.ts).
import type {} from '@fastify/cookie';
import type { AdminConfig } from '../../config/schema.js';
import { DoormanError } from '../../errors.js';
import { sendError } from './errors.js';

export const COOKIE = 'doorman_token';
/** As admin.token requires: shorter is guessable. */
const TOKEN_MIN = 16;

/** The token in force, or null for none; a token file that cannot be read or is too short stops the start. */
export function loadToken(cfg: Pick<AdminConfig, 'token' | 'token_file'>): string | null {
  if (cfg.token !== null) return cfg.token;
  if (cfg.token_file === null) return null;
  let text: string;
  try {
    text = readFileSync(cfg.token_file, 'utf8');
  } catch (err) {
    throw new DoormanError('DOORMAN_ERR_ADMIN_TOKEN', `admin.token_file ${cfg.token_file}: ${(err as Error).message}`);
  }
  const token = (text.split(/\r?\n/, 1)[0] ?? '').trim();
  if (token.length < TOKEN_MIN) {
    throw new DoormanError('DOORMAN_ERR_ADMIN_TOKEN', `admin.token_file ${cfg.token_file}: the first line must hold a token of at least ${TOKEN_MIN} characters`);
  }
  return token;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Whether `given` is the token, in time independent of both. */
export function tokenMatches(given: string | undefined, expected: Buffer): boolean {
  return given !== undefined && timingSafeEqual(digest(given), expected);
}

/** 127.0.0.0/8, ::1 and localhost, with or without a port. */
function loopbackHost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '::1' || /^127(\.\d{1,3}){3}$/.test(name);
}

/** Installs the check on every request; call after @fastify/cookie is registered. */
export function installAuth(app: FastifyInstance, token: string | null): void {
  const expected = token === null ? null : digest(token);
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.routeOptions.url === '/health') return;
    if (expected === null) {
      const host = req.headers.host;
      if (host === undefined || loopbackHost(host)) return;
      return sendError(reply, 'DOORMAN_ERR_UNAUTHORIZED', `Host ${host.slice(0, 100)} is not a loopback address: without admin.token the API answers only to loopback names`);
    }
    const login = req.routeOptions.url === '/' ? (req.query as Record<string, unknown>)['token'] : undefined;
    if (typeof login === 'string') {
      if (!tokenMatches(login, expected)) return sendError(reply, 'DOORMAN_ERR_UNAUTHORIZED', 'the token in the address is wrong');
      reply.setCookie(COOKIE, token as string, { httpOnly: true, sameSite: 'strict', path: '/' });
      return reply.header('cache-control', 'no-store').redirect('/', 302);
    }
    const auth = req.headers.authorization;
    if (auth !== undefined && auth.startsWith('Bearer ') && tokenMatches(auth.slice(7), expected)) return;
    if (tokenMatches(req.cookies[COOKIE], expected)) return;
    if (req.routeOptions.url === '/' && (req.headers.accept ?? '').includes('text/html')) {
      // A person opening the dashboard's address: say how to get in, not a JSON error.
      return reply.code(401).type('text/html; charset=utf-8').send(LOGIN_HINT);
    }
    const why = auth === undefined && req.cookies[COOKIE] === undefined ? 'a token is required: send Authorization: Bearer TOKEN, or open /?token=TOKEN once in a browser' : 'the token is wrong';
    return sendError(reply.header('www-authenticate', 'Bearer realm="doorman"'), 'DOORMAN_ERR_UNAUTHORIZED', why);
  });
}

const LOGIN_HINT =
  '<!doctype html><meta charset="utf-8"><title>Doorman</title><body style="font-family:sans-serif;margin:3em">' +
  '<h1>Doorman</h1><p>The dashboard needs the admin token. Open <code>/?token=YOUR_TOKEN</code> once ' +
  '(the token is <code>admin.token</code> or the first line of <code>admin.token_file</code>); ' +
  'a cookie then keeps you signed in.</p></body>\n';

/** The TCP peer, as guardrails and the audit log see it (an IPv4-mapped IPv6 address as dotted IPv4). */
export function callerAddress(req: FastifyRequest): string {
  const a = req.socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}
