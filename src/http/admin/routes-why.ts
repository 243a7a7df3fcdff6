/**
 * Why an address is refused, and how to lift it (src/control/why.ts):
 *
 *   GET /api/why?address   its bans in force (both layers) and recent refusals,
 *                          every node's in a fleet, each with the command that lifts it
 */
import type { FastifyInstance } from 'fastify';
import type { AdminContext } from './context.js';
import * as f from './fields.js';
import { whyJson } from './shapes.js';

export function whyRoutes(app: FastifyInstance, ctx: AdminContext): void {
  app.get<{ Querystring: { address: string } }>(
    '/api/why',
    { schema: { querystring: f.strict({ address: f.address }, ['address']) } },
    async (req) => whyJson(await ctx.why.ask(req.query.address), ctx.clock.now()),
  );
}
