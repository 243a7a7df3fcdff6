/**
 * The dashboard: static files from the repository's `dashboard/` directory,
 * `index.html` at `/` and every file of the directory at `/assets/*`. It is plain
 * HTML and JavaScript that calls this API with the cookie. Without the
 * directory (a package built without it), `/` says so in one line.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { notFound } from './errors.js';
import * as f from './fields.js';

/** dist/src/http/admin/dashboard.js → the repository root is four levels up. */
export const DASHBOARD_DIR = fileURLToPath(new URL('../../../../dashboard/', import.meta.url));

const NOT_INSTALLED = '<!doctype html><title>Doorman</title><p>The Doorman dashboard is not installed (no dashboard/ directory); the API is at /api/status.</p>\n';

/** Registers `/` and `/assets/*`; returns the directory served, or null when it is missing. */
export async function registerDashboard(app: FastifyInstance, dir = DASHBOARD_DIR): Promise<string | null> {
  const present = existsSync(`${dir}/index.html`);
  // `token` is the cookie login's (./auth.ts answers it before this route runs).
  const rootSchema = { schema: { querystring: f.strict({ token: { type: 'string' } }) } };
  if (!present) {
    app.get('/', rootSchema, async (_req, reply) => reply.type('text/html; charset=utf-8').send(NOT_INSTALLED));
    app.get('/assets/*', async () => {
      throw notFound('the dashboard is not installed');
    });
    return null;
  }
  // serve: false: the two routes below are the only way in, so nothing else in the directory is published.
  await app.register(fastifyStatic, { root: dir, serve: false });
  app.get('/', rootSchema, async (_req, reply) => reply.header('cache-control', 'no-cache').sendFile('index.html'));
  // send (under @fastify/static) refuses paths that climb out of the root.
  app.get<{ Params: { '*': string } }>('/assets/*', async (req, reply) => reply.sendFile(req.params['*']));
  return dir;
}
