/**
 * Read-only views: health, status, counts, peaks, what an address would
 * get, the top addresses, the last hour's history, and the metrics.
 *
 *   GET /health                 (no token)
 *   GET /api/status
 *   GET /api/counts?key | ?service&address
 *   GET /api/peaks
 *   GET /api/check?address&service
 *   GET /api/top?by=connections|refusals&limit
 *   GET /api/history
 *   GET /api/audit?limit        (the newest audit entries: the fleet's in fleet mode)
 *   GET /api/clients?service&by&limit   (the engine's counts per client: what
 *                                        anvil and the policy services report)
 *   GET /metrics                (Prometheus text)
 */
import type { StoreStatus } from '../../core/ports.js';
import type { FastifyInstance } from 'fastify';
import { formatIp, parseClientRange, parseIp } from '../../core/ip.js';
import { RATE_METRICS, type RateMetric } from '../../core/metrics.js';
import { parseNetwork } from '../../core/networks.js';
import type { AdminContext } from './context.js';
import * as f from './fields.js';
import { ControlInputError, HttpError } from '../../errors.js';
import { decisionJson, peakJson } from './shapes.js';

/** Top lists are for a glance; the full list is /api/connections. */
const TOP_MAX = 100;
/** Keys a /api/clients scan examines at most (about 30 ms for this many): beyond, it says it is incomplete. */
const CLIENTS_SCAN_MAX = 200_000;
/** Engine keys are "service:address" or "service:prefix/len": short. */
const KEY_MAX = 200;

export function readRoutes(app: FastifyInstance, ctx: AdminContext): void {
  const { control, registry } = ctx;
  const none = { schema: { querystring: f.strict({}) } };

  app.get('/health', none, async () => ({ status: 'ok' }));

  app.get('/api/status', none, async () => {
    const now = ctx.clock.now();
    const per = registry.countsByService();
    const services: Record<string, { protocol: string; connections: number; listen: readonly string[]; fronts: readonly string[] }> = {};
    for (const s of ctx.services) services[s.name] = { protocol: s.protocol, connections: per[s.name] ?? 0, listen: s.listen, fronts: s.fronts };
    return {
      version: ctx.version,
      started_at: new Date(ctx.startedAt).toISOString(),
      uptime_s: Math.max(0, Math.floor((now - ctx.startedAt) / 1000)),
      connections: registry.size,
      services,
      front_ends: ctx.frontEnds?.() ?? {},
      countries: countryCounts(registry.countsByCountry()),
      engine: { entries: ctx.gate.stats().entries },
      store: storeJson(ctx.gate.stats().storeKind, ctx.gate.stats().store, ctx.control.node),
      bans: control.bans().length,
      firewall: ctx.firewall?.() ?? null,
      crowdsec: ctx.crowdsec?.() ?? null,
    };
  });

  app.get<{ Querystring: { key?: string; service?: string; address?: string } }>(
    '/api/counts',
    { schema: { querystring: f.strict({ key: { type: 'string', minLength: 3, maxLength: KEY_MAX, description: 'an engine key: service:address or service:prefix/len' }, service: f.service, address: f.network }) } },
    async (req) => {
      const key = countsKey(req.query);
      const s = await control.counts(key);
      return { key, count: s.count, rates: { ...s.rates } };
    },
  );

  app.get('/api/peaks', none, async () => {
    const peaks: Record<string, ReturnType<typeof peakJson>> = {};
    for (const [name, p] of Object.entries(control.peaks())) if (p !== undefined) peaks[name] = peakJson(p);
    return { peaks };
  });

  app.get<{ Querystring: { address: string; service: string } }>(
    '/api/check',
    { schema: { querystring: f.strict({ address: f.address, service: f.service }, ['address', 'service']) } },
    async (req) => {
      const { address, service } = req.query;
      ctx.control.knownService(service);
      const r = await control.check(address, service);
      return { address, service, counted_as: r.countedAs, country: ctx.gate.countryOf(address), connect: decisionJson(r.connect), auth: decisionJson(r.auth) };
    },
  );

  app.get<{ Querystring: { by: 'connections' | 'refusals'; limit: number } }>(
    '/api/top',
    {
      schema: {
        querystring: f.strict(
          {
            by: { type: 'string', enum: ['connections', 'refusals'], description: 'connections or refusals' },
            limit: { type: 'integer', minimum: 1, maximum: TOP_MAX, default: 10, description: `an integer from 1 to ${TOP_MAX}` },
          },
          ['by'],
        ),
      },
    },
    async (req) => ({ items: req.query.by === 'refusals' ? ctx.refusals.top(req.query.limit) : topConnections(ctx, req.query.limit) }),
  );

  app.get<{ Querystring: { service?: string; by: 'count' | RateMetric; limit: number } }>(
    '/api/clients',
    {
      schema: {
        querystring: f.strict({
          service: f.service,
          by: { type: 'string', enum: ['count', ...RATE_METRICS], default: 'count', description: `count or a rate: ${RATE_METRICS.join(', ')}` },
          limit: { type: 'integer', minimum: 1, maximum: TOP_MAX, default: 20, description: `an integer from 1 to ${TOP_MAX}` },
        }),
      },
    },
    async (req) => {
      const { service, by, limit } = req.query;
      const r = await ctx.gate.top(service === undefined ? '' : `${service}:`, by, limit, CLIENTS_SCAN_MAX);
      return {
        scanned: r.scanned,
        complete: r.complete,
        items: r.items.map(({ key, snapshot }) => {
          const colon = key.indexOf(':');
          const client = key.slice(colon + 1);
          return { key, service: key.slice(0, colon), client, kind: clientKind(client), count: snapshot.count, rates: { ...snapshot.rates } };
        }),
      };
    },
  );

  app.get<{ Querystring: { limit: number } }>(
    '/api/audit',
    { schema: { querystring: f.strict({ limit: { type: 'integer', minimum: 1, maximum: 1000, default: 50, description: 'an integer from 1 to 1000' } }) } },
    async (req) => ({ items: await ctx.control.audit(req.query.limit) }),
  );

  app.get('/api/history', none, async () => ({
    step_s: Math.round(ctx.history.stepMs / 1000),
    points: ctx.history.points().map((p) => ({ at: new Date(p.at).toISOString(), services: p.services })),
  }));

  app.get('/metrics', none, async (_req, reply) => {
    const text = await ctx.metrics.text();
    return reply.type(ctx.metrics.contentType).send(text);
  });
}

/** The registry's per-country counts, with "none" for addresses of no known country. */
function countryCounts(raw: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [cc, n] of Object.entries(raw)) out[cc === '' ? 'none' : cc] = n;
  return out;
}

/** The engine key asked for: given whole, or built from service and address in the engine's canonical form. */
function countsKey(q: { key?: string; service?: string; address?: string }): string {
  if (q.key !== undefined) {
    if (q.service !== undefined || q.address !== undefined) throw new HttpError('DOORMAN_ERR_BAD_REQUEST', 'give either key, or service and address, not both');
    return q.key;
  }
  if (q.service === undefined || q.address === undefined) throw new HttpError('DOORMAN_ERR_BAD_REQUEST', 'give key (service:address), or both service and address');
  const slash = q.address.indexOf('/');
  const ip = parseIp(slash < 0 ? q.address : q.address.slice(0, slash));
  if (ip === null) throw new ControlInputError('DOORMAN_ERR_ADDRESS', `"${q.address}" is not an IP address or network`);
  if (slash < 0) return `${q.service}:${formatIp(ip)}`;
  let net;
  try {
    net = parseNetwork(q.address);
  } catch (err) {
    throw new ControlInputError('DOORMAN_ERR_ADDRESS', (err as Error).message);
  }
  // The engine's prefix keys read like prefixOf(): the masked address, then the length as written for its family.
  return `${q.service}:${formatIp({ words: net.words, family: ip.family })}/${ip.family === 4 ? net.bits - 96 : net.bits}`;
}

/**
 * What an engine key's client is: an address; a network (a per-prefix count,
 * or the range Postfix 3.8+ smtpd counts a client in, which a ban or a kick
 * takes as the CIDR it is); or a name anvil was given that is neither.
 */
function clientKind(client: string): 'address' | 'network' | 'name' {
  const r = parseClientRange(client);
  if (r === null) return 'name';
  return client.indexOf('/') === -1 ? 'address' : 'network';
}

/** Live connections per address, most first; ties by address. */
function topConnections(ctx: AdminContext, limit: number): Array<{ address: string; country: string | null; count: number }> {
  return ctx.registry
    .countsByAddress()
    .sort((a, b) => b.count - a.count || (a.address < b.address ? -1 : 1))
    .slice(0, limit);
}

/** The counter store: where counting happens now, and in a fleet since when and how often Redis was lost. */
function storeJson(kind: string, st: StoreStatus | null, node: string): Record<string, unknown> {
  if (st === null) return { type: kind, node };
  return { type: kind, node, backend: st.backend, up: st.up, failovers: st.failovers, since: new Date(st.since).toISOString() };
}
