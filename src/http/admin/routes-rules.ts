/**
 * Bans and country rules changed at run time. Every change can be asked for
 * with `dry_run` first (it reports the live connections it would hit and
 * changes nothing); a real one is written to the state file and the audit
 * log by the controls before the answer goes out.
 *
 *   GET    /api/bans
 *   POST   /api/bans {"target","ttl","reason","dry_run"?}
 *   DELETE /api/bans?target=
 *   GET    /api/countries
 *   PUT    /api/countries/:service/:phase {"allow"|"deny":[CC…],"mode"?,"dry_run"?}
 *   DELETE /api/countries/:service/:phase?dry_run
 *   POST   /api/countries/:service/:phase/block   {"country","dry_run"?}
 *   POST   /api/countries/:service/:phase/unblock {"country","dry_run"?}
 */
import type { FastifyInstance } from 'fastify';
import type { ChangeResult } from '../../control/control.js';
import type { RulePhase } from '../../core/rules.js';
import { callerAddress } from './auth.js';
import type { AdminContext } from './context.js';
import { countryOrThrow, notFound } from './errors.js';
import * as f from './fields.js';
import { banJson, connectionJson } from './shapes.js';

/** ISO 3166 has about 250 codes; a list cannot usefully be longer. */
const CODES_MAX = 300;

const codes = { type: 'array', items: f.country, minItems: 1, maxItems: CODES_MAX, uniqueItems: true, description: `a list of 1 to ${CODES_MAX} two-letter country codes` } as const;
const phaseParams = f.strict({ service: f.service, phase: f.phase }, ['service', 'phase']);

interface PhaseParams {
  service: string;
  phase: RulePhase;
}

interface RuleBody {
  allow?: string[];
  deny?: string[];
  mode?: 'enforce' | 'dry-run';
  dry_run?: boolean;
}

function hitsJson(r: ChangeResult<unknown>): { dry_run: boolean; hits: ReturnType<typeof connectionJson>[] } {
  const now = Date.now();
  return { dry_run: r.dryRun, hits: r.hits.map((c) => connectionJson(c, now)) };
}

export function ruleRoutes(app: FastifyInstance, ctx: AdminContext): void {
  const { control, log } = ctx;

  app.get('/api/bans', { schema: { querystring: f.strict({}) } }, async () => {
    const now = ctx.clock.now();
    return { items: control.bans().map((b) => banJson(b, now)) };
  });

  app.post<{ Body: { target: string; ttl: string | number; reason: string; dry_run?: boolean } }>(
    '/api/bans',
    { schema: { body: f.strict({ target: f.network, ttl: f.duration, reason: f.reason, dry_run: f.dryRun }, ['target', 'ttl', 'reason']) } },
    async (req) => {
      const b = req.body;
      const by = callerAddress(req);
      const ttlMs = f.durationMs(b.ttl, 'body.ttl');
      const r = await control.ban(b.target, ttlMs, b.reason, { address: by }, b.dry_run === true);
      if (!r.dryRun) log.info({ by, target: r.result?.target, ttl_s: Math.round(ttlMs / 1000), reason: b.reason }, 'admin: ban');
      return { ...hitsJson(r), ban: r.result === null ? null : banJson(r.result, ctx.clock.now()) };
    },
  );

  app.delete<{ Querystring: { target: string } }>('/api/bans', { schema: { querystring: f.strict({ target: f.network }, ['target']) } }, async (req) => {
    const by = callerAddress(req);
    if (!(await control.unban(req.query.target, { address: by }))) throw notFound(`no ban on ${req.query.target}`);
    log.info({ by, target: req.query.target }, 'admin: ban lifted');
    return { removed: true };
  });

  app.get('/api/countries', { schema: { querystring: f.strict({}) } }, async () => ({ services: control.countries() }));

  app.put<{ Params: PhaseParams; Body: RuleBody }>(
    '/api/countries/:service/:phase',
    {
      schema: {
        params: phaseParams,
        body: {
          ...f.strict({ allow: codes, deny: codes, mode: { type: 'string', enum: ['enforce', 'dry-run'], description: 'enforce or dry-run' }, dry_run: f.dryRun }),
          // Exactly one list: an allow and a deny list for one phase contradict each other.
          oneOf: [{ required: ['allow'] }, { required: ['deny'] }],
          description: 'an object with either "allow" or "deny" (a list of country codes), not both',
        },
      },
    },
    async (req) => {
      const { service, phase } = req.params;
      const b = req.body;
      const rule = { allow: countries(b.allow), deny: countries(b.deny), mode: b.mode };
      const by = callerAddress(req);
      const r = await control.setCountries(service, phase, dropUndefined(rule), { address: by }, b.dry_run === true);
      if (!r.dryRun) log.info({ by, service, phase, rule }, 'admin: country rule set');
      return hitsJson(r);
    },
  );

  app.delete<{ Params: PhaseParams; Querystring: { dry_run?: boolean } }>(
    '/api/countries/:service/:phase',
    { schema: { params: phaseParams, querystring: f.strict({ dry_run: f.dryRun }) } },
    async (req) => {
      const { service, phase } = req.params;
      const by = callerAddress(req);
      const r = await control.setCountries(service, phase, null, { address: by }, req.query.dry_run === true);
      if (!r.dryRun) log.info({ by, service, phase }, 'admin: country rule lifted');
      return hitsJson(r);
    },
  );

  for (const verb of ['block', 'unblock'] as const) {
    app.post<{ Params: PhaseParams; Body: { country: string; dry_run?: boolean } }>(
      `/api/countries/:service/:phase/${verb}`,
      { schema: { params: phaseParams, body: f.strict({ country: f.country, dry_run: f.dryRun }, ['country']) } },
      async (req) => {
        const { service, phase } = req.params;
        const by = callerAddress(req);
        const code = countryOrThrow(req.body.country);
        const dry = req.body.dry_run === true;
        if (verb === 'block') {
          const r = await control.blockCountry(service, phase, code, { address: by }, dry);
          if (!r.dryRun) log.info({ by, service, phase, country: code }, 'admin: country blocked');
          return hitsJson(r);
        }
        const r = await control.unblockCountry(service, phase, code, { address: by }, dry);
        if (!r.dryRun) log.info({ by, service, phase, country: code }, 'admin: country unblocked');
        // An unblock lets clients in and cuts nobody: connections the remaining
        // rule would refuse were already there before this change.
        return { dry_run: r.dryRun, hits: [] };
      },
    );
  }
}

/** The controls tell "no list" from an empty one by the key's absence. */
function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function countries(list: readonly string[] | undefined): string[] | undefined {
  return list?.map(countryOrThrow);
}
