/**
 * The admin API as the dashboard calls it (docs/admin-api.md): same-origin
 * fetch, authenticated by the `doorman_token` cookie the server set when the
 * page was opened as `/?token=…`. JSON in and out; a failure is an ApiError
 * carrying the server's code and message, so the page can show them as they are.
 */

/**
 * @typedef {{ id: string, service: string, protocol: string, client: { address: string, port: number },
 *   country: string | null, listen: string, backend: string, started_at: string, age_s: number,
 *   bytes_in: number, bytes_out: number, encrypted: boolean }} Connection
 * @typedef {{ id: string, service: string, address: string, why: string, bytes_in: number, bytes_out: number }} Disconnect
 * @typedef {{ service: string, address: string, country: string | null, rule: string, reason: string, by: string }} Refusal
 * @typedef {{ target: string, kicked: number, ban: string | null, reason: string }} KickEvent
 * @typedef {{ target: string, until: string, left_s: number, reason: string, created_at: string, origin: string, strike: number }} Ban
 * @typedef {{ kind: 'allow' | 'deny', codes: string[], mode: 'enforce' | 'dry-run', source: 'config' | 'runtime' }} Rule
 * @typedef {'connect' | 'auth'} Phase
 * @typedef {{ dry_run: boolean, hits: Connection[] }} ChangeReply
 * @typedef {{ protocol: string, connections: number, listen: string[], fronts: string[] }} ServiceStatus
 * @typedef {{ version: string, started_at: string, uptime_s: number, connections: number,
 *   services: Record<string, ServiceStatus>, countries: Record<string, number>, engine: { entries: number }, bans: number }} Status
 * @typedef {{ value: number, key: string, at: string }} Peak
 * @typedef {{ address: string, country: string | null, count: number }} TopItem
 * @typedef {{ at: string, services: Record<string, number> }} HistoryPoint
 * @typedef {{ service?: string, address?: string, country?: string }} ConnectionFilter
 * @typedef {{ command: string | null, how: string }} Lift
 * @typedef {{ target: string, layer: string, origin: string, strike: number, until: string }} BanRef
 * @typedef {BanRef & { left_s: number, reason: string, created_at: string, nodes: string[], lift: Lift }} WhyBan
 * @typedef {{ at: string, first_at: string, times: number, node: string, service: string, by: string, country: string | null,
 *   rule: string, cause: string, reason: string, temporary: boolean, count: number | null, limit: number | null, key: string | null,
 *   retry_after_s: number, until: string | null, in_force: boolean, ban: BanRef | null, lift: Lift }} WhyRefusal
 * @typedef {{ address: string, country: string | null, bans: WhyBan[], refusals: WhyRefusal[], missing_nodes: string[],
 *   record: { addresses: number, per_address: number, max_age_s: number } }} Why
 */

/** A request that takes longer has met a hung server; the page says so instead of waiting forever. */
const TIMEOUT_MS = 15_000;

/** The API refused or could not be reached. `status` is 0 when nothing answered. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** @type {(err: ApiError) => void} */
let onUnauthorized = () => {};

/** Called on every 401, so the page can tell the user how to sign in. */
export function setUnauthorizedHandler(/** @type {(err: ApiError) => void} */ f) {
  onUnauthorized = f;
}

/**
 * One API call.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function call(method, path, body) {
  /** @type {RequestInit} */
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json' }, signal: AbortSignal.timeout(TIMEOUT_MS) };
  if (body !== undefined) {
    init.headers = { accept: 'application/json', 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    const why = err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${TIMEOUT_MS / 1000} s` : String(err instanceof Error ? err.message : err);
    throw new ApiError(0, 'NETWORK', `Doorman cannot be reached (${why})`);
  }
  const text = await res.text();
  let data = null;
  if (text !== '') {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = data && typeof data === 'object' ? data.error : null;
    const err = new ApiError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? (text.slice(0, 300) || res.statusText));
    if (res.status === 401) onUnauthorized(err);
    throw err;
  }
  return data;
}

/** @param {Record<string, string | number | boolean | undefined>} params */
function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

const enc = encodeURIComponent;

/** @returns {Promise<Status>} */
export const getStatus = () => call('GET', '/api/status');

/**
 * Live connections matching `filter`, oldest first, one page.
 * @param {ConnectionFilter & { offset?: number, limit?: number }} p
 * @returns {Promise<{ total: number, items: Connection[] }>}
 */
export const getConnections = (p) => call('GET', `/api/connections${query(p)}`);

/**
 * @param {{ target: string, ban?: string, reason?: string, service?: string, dry_run?: boolean }} body
 * @returns {Promise<ChangeReply & { kicked: number, ban: Ban | null }>}
 */
export const kick = (body) => call('POST', '/api/kick', body);

/** @returns {Promise<{ items: Ban[] }>} */
export const getBans = () => call('GET', '/api/bans');

/**
 * @param {{ target: string, ttl: string, reason: string, dry_run?: boolean }} body
 * @returns {Promise<ChangeReply & { ban: Ban | null }>}
 */
export const ban = (body) => call('POST', '/api/bans', body);

/** @returns {Promise<{ removed: boolean }>} */
export const unban = (/** @type {string} */ target) => call('DELETE', `/api/bans${query({ target })}`);

/** @returns {Promise<{ services: Record<string, { connect: Rule | null, auth: Rule | null }> }>} */
export const getCountries = () => call('GET', '/api/countries');

/**
 * Blocks (or unblocks) one country for a service's phase, whatever list is in force.
 * @param {'block' | 'unblock'} op
 * @param {string} service
 * @param {Phase} phase
 * @param {string} country
 * @param {boolean} dryRun
 * @returns {Promise<ChangeReply>}
 */
export const countryChange = (op, service, phase, country, dryRun) =>
  call('POST', `/api/countries/${enc(service)}/${enc(phase)}/${op}`, { country, dry_run: dryRun });

/** @returns {Promise<{ peaks: Record<string, Peak> }>} */
export const getPeaks = () => call('GET', '/api/peaks');

/** @returns {Promise<{ items: TopItem[] }>} */
/**
 * @typedef {{ key: string, service: string, client: string, kind: 'address' | 'network' | 'name', count: number, rates: Record<string, number> }} EngineClient
 * @returns {Promise<{ items: EngineClient[], scanned: number, complete: boolean }>}
 */
export const getClients = (limit = 10) => call('GET', `/api/clients${query({ limit })}`);
export const getTop = (/** @type {'connections' | 'refusals'} */ by, limit = 10) => call('GET', `/api/top${query({ by, limit })}`);

/**
 * An address's bans in force and recent refusals, each with how it is lifted.
 * @returns {Promise<Why>}
 */
export const getWhy = (/** @type {string} */ address) => call('GET', `/api/why${query({ address })}`);

/** @returns {Promise<{ step_s: number, points: HistoryPoint[] }>} */
export const getHistory = () => call('GET', '/api/history');
