/**
 * Errors of the country lookup. Each names the file, because the operator who
 * reads it has to go and fix that file (or its updater).
 */
import { DoormanError } from '../errors.js';

/** A country database cannot be used: missing, unreadable, not MaxMind DB, not country data, corrupt. */
export class GeoDatabaseError extends DoormanError {
  readonly path: string;
  constructor(path: string, problem: string, options?: { cause?: unknown }) {
    super('DOORMAN_ERR_GEO_DATABASE', `country database ${path}: ${problem}`, options);
    this.path = path;
  }
}

/** The directory of a country database cannot be watched, so updates are not seen until it can. */
export class GeoWatchError extends DoormanError {
  readonly path: string;
  constructor(path: string, problem: string, options?: { cause?: unknown }) {
    super('DOORMAN_ERR_GEO_WATCH', `country database ${path}: ${problem}`, options);
    this.path = path;
  }
}
