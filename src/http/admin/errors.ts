/**
 * Errors as the admin API reports them, always in one shape:
 *
 *   STATUS {"error":{"code":"DOORMAN_ERR_…","message":"what is wrong, in words"}}
 *
 * The status is the code's, from the catalogue (../../errors.ts: each
 * entry's `http`), whoever threw it: a route (HttpError), the controls
 * (ControlInputError 400, GuardrailError 409), a reload (ConfigError 400,
 * ReloadError 409), the fleet's store (StoreUnavailableError 503). Besides:
 * fastify's own 4xx keep their status as DOORMAN_ERR_BAD_REQUEST; a failed
 * write (state file, audit log) is DOORMAN_ERR_STATE_WRITE; anything else is
 * a bug, DOORMAN_ERR_INTERNAL, logged. docs/admin-api.md lists the codes.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ConfigError, DoormanError, ERRORS, HttpError, httpStatus, StoreUnavailableError, type ErrorCode, type HttpCode } from '../../errors.js';
import { badCountryMessage, normaliseCountry } from '../../core/country-codes.js';

export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** An error as answered: the status, and the body's code and message. */
interface Answer {
  readonly status: number;
  readonly code: ErrorCode;
  readonly message: string;
}

/** `code` with the status the catalogue gives it. */
function answer(code: HttpCode, message: string): Answer {
  return { status: ERRORS[code].http, code, message };
}

function send(reply: FastifyReply, a: Answer): FastifyReply {
  const body: ErrorBody = { error: { code: a.code, message: a.message } };
  return reply.code(a.status).send(body);
}

/** Answers with the error shape and the status the catalogue gives `code`. */
export function sendError(reply: FastifyReply, code: HttpCode, message: string): FastifyReply {
  return send(reply, answer(code, message));
}

/** A country code from a request, in capitals; 400 naming it when it is not an assigned code (../../core/country-codes.ts). */
export function countryOrThrow(input: string): string {
  const code = normaliseCountry(input);
  if (code === null) throw new HttpError('DOORMAN_ERR_COUNTRY', badCountryMessage(input));
  return code;
}

export function notFound(what: string): HttpError {
  return new HttpError('DOORMAN_ERR_NOT_FOUND', what);
}

/** What ajv reports with `verbose: true`: the schema that failed and the value. */
interface VerboseError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
  parentSchema?: { description?: string; properties?: Record<string, { description?: string }> };
  data?: unknown;
}

/** Values quoted in messages are cut: an error must not echo a megabyte back. */
const QUOTE_MAX = 80;

function quote(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > QUOTE_MAX ? `${s.slice(0, QUOTE_MAX)}…` : s;
}

/**
 * One line per failed request, naming the field, what it held and what was
 * expected; the words come from each schema's `description`, so every field
 * explains itself where it is declared.
 */
export function formatSchemaErrors(errors: readonly VerboseError[], dataVar: string): Error {
  // A failed oneOf reports its branches' errors first; the oneOf itself says what was meant.
  const e = errors.find((x) => x.keyword === 'oneOf' || x.keyword === 'anyOf') ?? errors[0];
  if (e === undefined) return new Error(`${dataVar} is not valid`);
  const where = `${dataVar}${e.instancePath.replace(/\//g, '.')}`;
  let text: string;
  if (e.keyword === 'required') {
    const name = String(e.params['missingProperty']);
    const wants = e.parentSchema?.properties?.[name]?.description;
    text = `${where}.${name} is required${wants ? `: ${wants}` : ''}`;
  } else if (e.keyword === 'additionalProperties') {
    const known = Object.keys(e.parentSchema?.properties ?? {});
    text = `${where} has an unknown field "${String(e.params['additionalProperty']).slice(0, QUOTE_MAX)}"${known.length > 0 ? ` (known: ${known.join(', ')})` : ' (none is taken)'}`;
  } else {
    const wants = e.parentSchema?.description ?? e.message ?? 'something else';
    text = `${where}: got ${quote(e.data)}, expected ${wants}`;
  }
  return new Error(text);
}

/** Maps whatever a route threw to the error shape; logs what is not the caller's fault. */
export function installErrorHandlers(app: FastifyInstance, log: Logger): void {
  app.setSchemaErrorFormatter((errors, dataVar) => formatSchemaErrors(errors as VerboseError[], dataVar));
  app.setNotFoundHandler(async (req: FastifyRequest, reply: FastifyReply) => {
    return sendError(reply, 'DOORMAN_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]?.slice(0, 200)}`);
  });
  app.setErrorHandler(async (err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply) => {
    const a = classify(err);
    if (a.status >= 500) log.error({ err, method: req.method, url: req.url.split('?')[0] }, 'admin API: request failed');
    return send(reply, a);
  });
}

function classify(err: FastifyError | Error): Answer {
  if ('validation' in err && err.validation !== undefined) return answer('DOORMAN_ERR_BAD_REQUEST', err.message);
  if (err instanceof DoormanError) {
    const status = httpStatus(err.code);
    if (status !== null) return { status, code: err.code, message: inWords(err) };
  }
  const status = 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : 500;
  // fastify's own 4xx: a body that is not JSON, too large, the wrong content type.
  if (status >= 400 && status < 500) return { status, code: 'DOORMAN_ERR_BAD_REQUEST', message: err.message };
  // The only I/O behind a route is writing the state file and the audit log.
  if (typeof (err as NodeJS.ErrnoException).syscall === 'string') return answer('DOORMAN_ERR_STATE_WRITE', `the change could not be written: ${err.message}`);
  return answer('DOORMAN_ERR_INTERNAL', err.message);
}

/** The message as the API says it: a refused reload and an unreachable store say that nothing changed. */
function inWords(err: Error): string {
  if (err instanceof ConfigError) return `not reloaded, the running configuration stays:\n${err.message}`;
  if (err instanceof StoreUnavailableError) return `the fleet's store is unreachable; nothing was changed (${err.message})`;
  return err.message;
}
