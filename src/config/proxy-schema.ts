/**
 * The guard proxy's settings, one block per service (`services.NAME.proxy`):
 * where it listens, where the real server is, whether the real client
 * address is passed on with the PROXY protocol, whom to believe a PROXY
 * header from, and the words of its refusals. The service's protocol
 * (smtp, submission, smtps, pop3, pop3s, imap, imaps) decides how a refusal
 * is worded. Networks and the backend are checked again, naming the key,
 * when the rules compile (../core/rules.ts) and when the proxy starts.
 */
import { z } from 'zod';
import { durationSchema } from './duration.js';

const HOST_PORT = 'host:port such as 0.0.0.0:143 or [::]:143';
const hostPort = z.string({ error: HOST_PORT }).regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { error: HOST_PORT });

const BACKEND = 'host:port of the real server (e.g. 127.0.0.1:10143) or an absolute UNIX socket path';
const backend = z.string({ error: BACKEND }).regex(/^(\/.+|(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})$/, { error: BACKEND });

const text = z
  .string({ error: 'one line of printable text, or null for the built-in wording' })
  .regex(/^[\x20-\x7e]{1,400}$/, { error: 'one line of printable ASCII (at most 400 characters), or null for the built-in wording' })
  .nullable()
  .default(null);

/** What a refused client is told; `{limit}` is replaced by the limit that was hit. null: the built-in words. */
export const refusalTextsSchema = z.strictObject(
  {
    /** connections_per_address */
    too_many: text,
    /** connections_per_prefix */
    too_many_network: text,
    /** connection_rate */
    rate: text,
    /** a temporary ban */
    banned: text,
    /** a country rule */
    country: text,
    /** the backend cannot be reached, or the listener is full */
    unavailable: text,
  },
  { error: 'a mapping of refusal texts (too_many, too_many_network, rate, banned, country, unavailable)' },
);

export const proxySchema = z.strictObject(
  {
    listen: z.array(hostPort, { error: `a list of ${HOST_PORT}` }).min(1, { error: `at least one ${HOST_PORT}` }),
    backend,
    /** The header sent to the backend first: it must be configured to expect exactly this. */
    proxy_protocol: z.enum(['v1', 'v2', 'none'], { error: 'one of: v1, v2, none (what the backend expects first)' }),
    /**
     * Load balancers in front of Doorman: a connection from these networks
     * must start with a PROXY header (v1 or v2), whose source address is then
     * the client judged. From anywhere else a PROXY header is refused.
     */
    accept_proxy_from: z.array(z.string({ error: 'a network such as 10.0.0.0/8' }), { error: 'a list of networks' }).default([]),
    /** The name in SMTP replies; null: the system's host name. */
    hostname: z
      .string({ error: 'a host name' })
      .regex(/^[A-Za-z0-9.-]{1,253}$/, { error: 'a host name of letters, digits, dots and dashes' })
      .nullable()
      .default(null),
    texts: refusalTextsSchema.default(() => refusalTextsSchema.parse({})),
    /** Proxied connections at once, per listen address; more are told the service is unavailable. */
    max_connections: z
      .number({ error: 'an integer from 1 to 1000000' })
      .int({ error: 'an integer from 1 to 1000000' })
      .min(1, { error: 'an integer from 1 to 1000000' })
      .max(1_000_000, { error: 'an integer from 1 to 1000000' })
      .default(10_000),
    /** Until the backend accepts; then the client is told to try later. */
    connect_timeout: durationSchema('5s', 10),
    /**
     * No byte either way for this long closes both sides. Above IMAP IDLE's
     * 29 minutes (RFC 9051): the backend keeps its own, shorter timers.
     */
    idle_timeout: durationSchema('35m', 1000),
    /** Until a trusted load balancer's PROXY header has arrived. */
    header_timeout: durationSchema('5s', 10),
  },
  { error: 'a mapping with listen, backend, proxy_protocol and optional settings' },
);

export type ProxyConfig = z.output<typeof proxySchema>;
export type RefusalTexts = z.output<typeof refusalTextsSchema>;
