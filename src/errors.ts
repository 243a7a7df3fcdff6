/**
 * Error classes with stable codes. A limit being hit is a Decision, never an
 * error: these are for input Doorman refuses and for faults it cannot serve around.
 */

/** Base class: every error Doorman throws on purpose carries a stable `code`. */
export class DoormanError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem found in a configuration file: which file, which key, what was there, what was expected. */
export interface ConfigIssue {
  file: string;
  key: string;
  value: unknown;
  expected: string;
}

/** The configuration is invalid. The message lists every issue, one per line. */
export class ConfigError extends DoormanError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super('DOORMAN_ERR_CONFIG', issues.map(formatIssue).join('\n'));
    this.issues = issues;
  }
}

function formatIssue(i: ConfigIssue): string {
  const shown = i.value === undefined ? '(missing)' : JSON.stringify(i.value);
  return `${i.file}: ${i.key || '(top level)'}: got ${shown}, expected ${i.expected}`;
}

/** Bytes from a peer broke the wire protocol; the connection that sent them is closed. */
export class ProtocolError extends DoormanError {}

/** A listener could not start (socket in use, bad path, permissions). */
export class ListenError extends DoormanError {}

/**
 * The shared store (Redis) did not answer in time or cannot be reached. The
 * gatekeeper turns it into the service's on_store_failure decision.
 */
export class StoreUnavailableError extends DoormanError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DOORMAN_ERR_STORE_UNAVAILABLE', message, options);
  }
}
