/**
 * Errors as the admin API reports them, always in one shape:
 *
 *   STATUS {"error":{"code":"DOORMAN_ERR_…","message":"what is wrong, in words"}}
 *
 *   400  bad input: a schema violation (named field, value, what was expected)
 *        or a ControlInputError from the controls
 *   401  no or a wrong token
 *   404  unknown id or route
 *   409  a guardrail refused the change (GuardrailError); a reload changing what needs a restart
 *   400  also: a reloaded configuration file that is invalid (each problem named)
 *   500  a change could not be written (state file, audit log), or a bug
 *   503  too many event-stream clients; fleet mode: Redis unreachable, so no change can be stored
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { ConfigError, ControlInputError, GuardrailError, DoormanError, StoreUnavailableError, type HttpCode } from '../../errors.js';
import { ReloadError } from '../../config/reload.js';
import { badCountryMessage, normaliseCountry } from '../../core/country-codes.js';

/** An HTTP status with a stable code, thrown by a route. */
export class HttpError extends DoormanError {
  readonly status: number;
  constructor(status: number, code: HttpCode, message: string) {
    super(code, message);
    this.status = status;
  }
}

export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

/** A country code from a request, in capitals; 400 naming it when it is not an assigned code (../../core/country-codes.ts). */
export function countryOrThrow(input: string): string {
  const code = normaliseCountry(input);
  if (code === null) throw new HttpError(400, 'DOORMAN_ERR_COUNTRY', badCountryMessage(input));
  return code;
}

export function notFound(what: string): HttpError {
  return new HttpError(404, 'DOORMAN_ERR_NOT_FOUND', what);
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
    return reply.code(404).send(errorBody('DOORMAN_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]?.slice(0, 200)}`));
  });
  app.setErrorHandler(async (err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply) => {
    const { status, code, message } = classify(err);
    if (status >= 500) log.error({ err, method: req.method, url: req.url.split('?')[0] }, 'admin API: request failed');
    return reply.code(status).send(errorBody(code, message));
  });
}

function classify(err: FastifyError | Error): { status: number; code: string; message: string } {
  if ('validation' in err && err.validation !== undefined) return { status: 400, code: 'DOORMAN_ERR_BAD_REQUEST', message: err.message };
  if (err instanceof HttpError) return { status: err.status, code: err.code, message: err.message };
  if (err instanceof GuardrailError) return { status: 409, code: err.code, message: err.message };
  if (err instanceof ControlInputError) return { status: 400, code: err.code, message: err.message };
  if (err instanceof ReloadError) return { status: 409, code: err.code, message: err.message };
  if (err instanceof ConfigError) return { status: 400, code: err.code, message: `not reloaded, the running configuration stays:\n${err.message}` };
  if (err instanceof StoreUnavailableError) return { status: 503, code: err.code, message: `the fleet's store is unreachable; nothing was changed (${err.message})` };
  const status = 'statusCode' in err && typeof err.statusCode === 'number' ? err.statusCode : 500;
  // fastify's own 4xx: a body that is not JSON, too large, the wrong content type.
  if (status >= 400 && status < 500) return { status, code: 'DOORMAN_ERR_BAD_REQUEST', message: err.message };
  // The only I/O behind a route is writing the state file and the audit log.
  if (typeof (err as NodeJS.ErrnoException).syscall === 'string') {
    return { status: 500, code: 'DOORMAN_ERR_STATE_WRITE', message: `the change could not be written: ${err.message}` };
  }
  return { status: 500, code: 'DOORMAN_ERR_INTERNAL', message: err.message };
}
