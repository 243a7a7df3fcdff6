/**
 * A bouncer's one request to CrowdSec's Local API:
 *
 *   GET /v1/decisions/stream?startup=true&scopes=ip,range&dedup=false[&origins=…]
 *   X-Api-Key: <the key from `cscli bouncers add NAME`>
 *
 * with a deadline on the whole exchange and a cap on the answer's bytes
 * (a community blocklist is tens of thousands of decisions, some 200 bytes
 * each); the answer is read by ./stream.ts. `dedup=false` asks for every
 * decision, not only the longest per address, so that deleting one decision
 * is never mistaken for lifting an address that another still bans.
 *
 * The Local API answers a delta (no `startup`) from the time of this
 * bouncer's previous successful pull, which it keeps itself: an answer lost
 * on the way (a timeout after the server wrote it, a cut connection) loses
 * that delta, so the caller asks with startup=true again after any failure.
 *
 * The key goes in the header and nowhere else: no error, log field or
 * status carries it.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { DoormanError, type CodeOf } from '../errors.js';
import { readStreamAnswer, StreamShapeError, type StreamAnswer } from './stream.js';

/** The Local API could not be read; the code says how (src/errors.ts, kind crowdsec). */
export class CrowdsecError extends DoormanError {
  constructor(code: CodeOf<'crowdsec'>, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export interface LapiOptions {
  /** http://host:port or https://…, with or without a path prefix. */
  readonly url: string;
  readonly apiKey: string;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** Only decisions of these origins (crowdsec, cscli, CAPI, lists, …); empty: all. */
  readonly origins: readonly string[];
  readonly scenariosContaining: readonly string[];
  readonly scenariosNotContaining: readonly string[];
  readonly userAgent: string;
}

/** The path and query of a stream request. */
export function streamPath(o: Pick<LapiOptions, 'url' | 'origins' | 'scenariosContaining' | 'scenariosNotContaining'>, startup: boolean): string {
  const base = new URL(o.url);
  const q = new URLSearchParams();
  if (startup) q.set('startup', 'true');
  q.set('scopes', 'ip,range');
  q.set('dedup', 'false');
  if (o.origins.length > 0) q.set('origins', o.origins.join(','));
  if (o.scenariosContaining.length > 0) q.set('scenarios_containing', o.scenariosContaining.join(','));
  if (o.scenariosNotContaining.length > 0) q.set('scenarios_not_containing', o.scenariosNotContaining.join(','));
  // The comma is the Local API's list separator: written as is, as its own bouncers do.
  return `${base.pathname.replace(/\/+$/, '')}/v1/decisions/stream?${q.toString().replaceAll('%2C', ',')}`;
}

/** The URL as logs and the status show it: no credentials, no query. */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

export interface StreamResult {
  readonly answer: StreamAnswer;
  readonly bytes: number;
}

/** One stream request; rejects with a CrowdsecError, or resolves with the answer read. `signal` aborts it (stop). */
export function fetchStream(o: LapiOptions, startup: boolean, signal?: AbortSignal): Promise<StreamResult> {
  const url = new URL(o.url);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const where = shownUrl(o.url);
  return new Promise<StreamResult>((resolve, reject) => {
    let settled = false;
    const fail = (err: CrowdsecError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    const req = request(
      {
        protocol: url.protocol,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || (url.protocol === 'https:' ? 443 : 80),
        method: 'GET',
        path: streamPath(o, startup),
        headers: { 'X-Api-Key': o.apiKey, 'User-Agent': o.userAgent, Accept: 'application/json' },
        signal,
        // One request per poll: nothing to keep alive between polls seconds apart.
        agent: false,
      },
      (res) => onResponse(res),
    );
    const timer = setTimeout(() => fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_TIMEOUT', `${where}: no complete answer within ${o.timeoutMs} ms`)), o.timeoutMs);
    timer.unref();
    req.on('error', (err: NodeJS.ErrnoException) => {
      const why = err.code ?? err.message;
      fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_UNREACHABLE', `${where}: ${why}`));
    });
    req.end();

    function onResponse(res: IncomingMessage): void {
      const status = res.statusCode ?? 0;
      if (status === 401 || status === 403) {
        res.resume();
        return fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_KEY', `${where}: the bouncer key was refused (HTTP ${status})`));
      }
      if (status !== 200) {
        res.resume();
        return fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_STATUS', `${where}: HTTP ${status}`));
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > o.maxBytes) {
        return fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_TOO_LARGE', `${where}: an answer of ${declared} bytes, over crowdsec.max_response_bytes (${o.maxBytes})`));
      }
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > o.maxBytes) return fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_TOO_LARGE', `${where}: an answer over crowdsec.max_response_bytes (${o.maxBytes} bytes)`));
        chunks.push(c);
      });
      res.on('error', (err: Error) => fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_UNREACHABLE', `${where}: the answer was cut (${err.message})`)));
      res.on('end', () => {
        if (settled) return;
        let answer: StreamAnswer;
        try {
          answer = readStreamAnswer(JSON.parse(Buffer.concat(chunks, bytes).toString('utf8')) as unknown);
        } catch (err) {
          const why = err instanceof StreamShapeError ? err.message : 'not JSON';
          return fail(new CrowdsecError('DOORMAN_ERR_CROWDSEC_ANSWER', `${where}: ${why}`));
        }
        settled = true;
        clearTimeout(timer);
        resolve({ answer, bytes });
      });
    }
  });
}
