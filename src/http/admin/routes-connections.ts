/**
 * Live connections: list (filtered, paged, oldest first), one by id, kick.
 *
 *   GET  /api/connections?service&address&country&offset&limit
 *   GET  /api/connections/:id
 *   POST /api/kick {"target","ban"?,"reason"?,"service"?,"dry_run"?}
 *
 * Pages are at most 1000 connections, so a host with tens of thousands
 * never answers one huge body.
 */
import type { FastifyInstance } from 'fastify';
import { callerAddress } from './auth.js';
import type { AdminContext } from './context.js';
import { countryOrThrow, notFound } from './errors.js';
import * as f from './fields.js';
import { banJson, connectionJson } from './shapes.js';

const PAGE_MAX = 1000;
const PAGE_DEFAULT = 100;

interface ListQuery {
  service?: string;
  address?: string;
  country?: string;
  offset: number;
  limit: number;
}

interface KickBody {
  target: string;
  ban?: string | number;
  reason?: string;
  service?: string;
  dry_run?: boolean;
}

export function connectionRoutes(app: FastifyInstance, ctx: AdminContext): void {
  app.get<{ Querystring: ListQuery }>(
    '/api/connections',
    { schema: { querystring: f.strict({ service: f.service, address: f.network, country: f.country, ...f.paging(PAGE_MAX, PAGE_DEFAULT) }) } },
    async (req) => {
      const q = req.query;
      // Filters are checked as the changes check them: an unknown service or country is an error, not an empty list.
      if (q.service !== undefined) ctx.control.knownService(q.service);
      const country = q.country === undefined ? undefined : countryOrThrow(q.country);
      const filter = { service: q.service, address: q.address, country };
      const page = await ctx.control.fleetConnections(filter, { offset: q.offset, limit: q.limit });
      const now = Date.now();
      return { total: page.total, items: page.items.map((c) => connectionJson(c, now)), missing_nodes: page.missing };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/api/connections/:id',
    { schema: { params: f.strict({ id: { type: 'string', minLength: 1, maxLength: 100, description: 'a connection id' } }, ['id']) } },
    async (req) => {
      const c = ctx.control.connection(req.params.id);
      if (c === null) throw notFound(`no connection "${req.params.id}" (it may have closed)`);
      return connectionJson(c, Date.now());
    },
  );

  app.post<{ Body: KickBody }>(
    '/api/kick',
    { schema: { body: f.strict({ target: f.target, ban: f.duration, reason: f.reason, service: f.service, dry_run: f.dryRun }, ['target']) } },
    async (req) => {
      const b = req.body;
      const caller = { address: callerAddress(req) };
      const banMs = b.ban === undefined ? undefined : f.durationMs(b.ban, 'body.ban');
      const r = await ctx.control.kick(b.target, { banMs, reason: b.reason, service: b.service, dryRun: b.dry_run === true }, caller);
      if (!r.dryRun) ctx.log.info({ by: caller.address, target: b.target, kicked: r.result.kicked, ban: r.result.ban?.target ?? null, reason: b.reason ?? null }, 'admin: kick');
      const now = Date.now();
      return {
        dry_run: r.dryRun,
        hits: r.hits.map((c) => connectionJson(c, now)),
        kicked: r.result.kicked,
        missing_nodes: r.missing ?? [],
        ban: r.result.ban === null ? null : banJson(r.result.ban, ctx.clock.now()),
      };
    },
  );
}
