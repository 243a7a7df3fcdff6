/**
 * The CLI's client of the admin API (docs/admin-api.md): JSON over HTTP, a
 * bearer token, a deadline on every request.
 *
 * Every failure becomes one AdminError with a message an operator can act on
 * and the exit code the command ends with:
 *   - no answer (connection refused, unknown host, timeout, not Doorman's
 *     API): EXIT.unreachable, naming the URL and where it came from;
 *   - an answer refusing the request (401, 4xx with the server's own
 *     message, 409 from a guardrail, 5xx): EXIT.refused.
 * Nothing here prints or exits; the commands do.
 *
 * Redirects are not followed: the API never sends one, and following it
 * could carry the token elsewhere. Bodies are capped (MAX_RESPONSE_BYTES).
 */
import { DoormanError, isErrorCode, type ErrorCode } from '../errors.js';
import { oneLine } from './format.js';

/** How every `doorman` command that talks to the daemon ends. */
export const EXIT = {
  ok: 0,
  /** The daemon answered and refused: bad input, unknown id, wrong token, a guardrail, a failed write. */
  refused: 1,
  /** Bad arguments or configuration; nothing was sent. */
  usage: 2,
  /** No daemon answered (not running, wrong address, timed out, something else listening). */
  unreachable: 3,
} as const;

/** A deadline for every request: a healthy daemon answers in milliseconds, a stuck one must not hang a shell. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/**
 * The largest response read. The biggest the API sends is a page of 1000
 * connections, about 400 KB; past 16 MiB it is not the admin API talking.
 */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** A request to the admin API failed; `exitCode` is what the command exits with. */
export class AdminError extends DoormanError {
  readonly exitCode: number;
  /** The HTTP status, when the daemon answered. */
  readonly status: number | null;
  constructor(code: ErrorCode, message: string, exitCode: number, status: number | null = null, options?: { cause?: unknown }) {
    super(code, message, options);
    this.exitCode = exitCode;
    this.status = status;
  }
}

export interface AdminClientOptions {
  /** The API's base URL, e.g. `http://127.0.0.1:8025` (a path prefix is kept). */
  readonly url: string;
  readonly token: string | null;
  /** Where the token came from (`--token`, `DOORMAN_TOKEN`, `admin.token in FILE`), named when it is refused. */
  readonly tokenSource?: string | null;
  /** Where the URL came from (`admin.listen is … in FILE`, `--url`), named when nothing answers there. */
  readonly urlSource?: string;
  readonly timeoutMs?: number;
}

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

export class AdminClient {
  private readonly base: URL;
  private readonly o: AdminClientOptions;
  private readonly timeoutMs: number;

  constructor(opts: AdminClientOptions) {
    this.o = opts;
    this.base = new URL(opts.url.endsWith('/') ? opts.url : `${opts.url}/`);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** The base URL, as requests are sent to it. */
  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query });
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, { body });
  }

  put<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PUT', path, { body });
  }

  delete<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('DELETE', path, { query });
  }

  /** Sends one request and returns the parsed JSON of a 2xx answer; anything else is an AdminError. */
  async request<T>(method: string, path: string, opts: { query?: Query; body?: unknown } = {}): Promise<T> {
    const url = new URL(path.replace(/^\//, ''), this.base);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.o.token !== null) headers['authorization'] = `Bearer ${this.o.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const what = `${method} ${url.pathname}`;
    const signal = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), redirect: 'manual', signal });
      text = await readCapped(res);
    } catch (err) {
      throw this.noAnswer(err, what);
    }
    const type = res.headers.get('content-type') ?? '';
    const json = type.includes('application/json') ? tryJson(text) : undefined;
    if (res.status >= 200 && res.status < 300) {
      if (json === undefined) throw this.notTheApi(`answered ${what} with ${describeType(type)}, not JSON`);
      return json as T;
    }
    if (res.status >= 300 && res.status < 400) throw this.notTheApi(`answered ${what} with a redirect (HTTP ${res.status}${res.headers.get('location') ? ` to ${res.headers.get('location')}` : ''})`);
    throw this.refused(res.status, json, text, what);
  }

  private refused(status: number, json: unknown, text: string, what: string): AdminError {
    const e = (json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    // The daemon's code; one this catalogue does not know (another version's) reads as the bare status.
    const code = typeof e?.code === 'string' && isErrorCode(e.code) ? e.code : (`DOORMAN_ERR_HTTP_${status}` as const);
    const said = oneLine(typeof e?.message === 'string' ? e.message : text.trim() !== '' && !text.trimStart().startsWith('<') ? text : `HTTP ${status}`);
    if (status === 401) {
      const msg =
        this.o.token === null
          ? `the daemon requires a token (${said}): pass --token, set DOORMAN_TOKEN, or --config with the configuration holding admin.token`
          : `the daemon refused the token from ${this.o.tokenSource ?? 'the command line'} (${said})`;
      return new AdminError(code, msg, EXIT.refused, status);
    }
    if (status === 409) return new AdminError(code, `${said} (a guardrail; nothing was changed)`, EXIT.refused, status);
    if (e === undefined && status >= 500) return new AdminError(code, `${this.url} answered ${what} with HTTP ${status} and no admin API error${said === `HTTP ${status}` ? '' : ` (${said})`}`, EXIT.refused, status);
    if (status >= 500) return new AdminError(code, `the daemon could not do it: ${said} (HTTP ${status} on ${what})`, EXIT.refused, status);
    if (e === undefined && status === 404) return this.notTheApi(`answered ${what} with HTTP 404 and no admin API error`);
    return new AdminError(code, said, EXIT.refused, status);
  }

  private noAnswer(err: unknown, what: string): AdminError {
    const name = (err as Error | undefined)?.name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      return new AdminError(
        'DOORMAN_ERR_ADMIN_TIMEOUT',
        `no answer from the daemon at ${this.url} within ${seconds(this.timeoutMs)} (${what}): is it stuck or overloaded? (--timeout sets the deadline)`,
        EXIT.unreachable,
        null,
        { cause: err },
      );
    }
    if (err instanceof AdminError) return err;
    const why = describeNetworkError(err);
    const where = this.o.urlSource ? ` ${this.o.urlSource}` : '';
    return new AdminError('DOORMAN_ERR_ADMIN_UNREACHABLE', `cannot reach the daemon at ${this.url} (${why}): is the daemon running?${where}`, EXIT.unreachable, null, { cause: err });
  }

  private notTheApi(what: string): AdminError {
    const where = this.o.urlSource ? ` (${this.o.urlSource})` : '';
    return new AdminError('DOORMAN_ERR_ADMIN_PROTOCOL', `${this.url} ${what}: is that Doorman's admin API${where}?`, EXIT.unreachable);
  }
}

/** The body as text, refusing more than MAX_RESPONSE_BYTES. */
async function readCapped(res: Response): Promise<string> {
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > MAX_RESPONSE_BYTES) {
      await res.body.cancel().catch(() => {});
      throw new AdminError('DOORMAN_ERR_ADMIN_PROTOCOL', `the answer from ${res.url} is over ${MAX_RESPONSE_BYTES / 1024 / 1024} MiB: not the admin API`, EXIT.unreachable);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function describeType(type: string): string {
  return type === '' ? 'no content type' : type.split(';')[0] as string;
}

const NETWORK_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connect timed out',
  EPIPE: 'connection closed',
  UND_ERR_SOCKET: 'connection closed without an answer',
  UND_ERR_HEADERS_OVERFLOW: 'answer headers too large',
};

/** fetch() says only "fetch failed"; the reason is in its cause (or the cause's first error, for a name with several addresses). */
function describeNetworkError(err: unknown): string {
  const cause = (err as { cause?: unknown } | undefined)?.cause as { code?: string; message?: string; errors?: Array<{ code?: string; message?: string }> } | undefined;
  const code = cause?.code ?? cause?.errors?.[0]?.code;
  if (code !== undefined && NETWORK_ERRORS[code] !== undefined) return NETWORK_ERRORS[code];
  return oneLine(cause?.message ?? cause?.errors?.[0]?.message ?? (err as Error | undefined)?.message ?? String(err), 200);
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
