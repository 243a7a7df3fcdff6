/**
 * Country of a client address, from a MaxMind DB file, kept current while
 * Doorman runs.
 *
 * Answers are upper-case ISO 3166-1 alpha-2 codes, or null: for
 * special-purpose addresses (judged first, see ./special.ts: the embedded
 * database answers AU for 192.168.1.1), for addresses the database does not
 * know, for records without a country, and for strings that are not addresses.
 * With no path configured, the CC0 database of the npm package
 * @ip-location-db/geo-whois-asn-country-mmdb is used.
 *
 * Updates. geoipupdate and most tools write a new file and rename it over the
 * old one, which leaves a watch on the file itself watching the old inode; so
 * the directory is watched (and the target's directory too when the path is a
 * symbolic link), events for the file's name are debounced, and the new file
 * is read whole and validated (./database.ts) before it replaces the reader in
 * service. A missing, half-written or broken file is reported as
 * 'reload-failed' and lookups go on from the old reader; they never see a gap,
 * since the swap is one assignment on the single JS thread. A tool that writes
 * in place triggers a failed attempt or two while it writes, and a good reload
 * after its last write.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { asError, countryCode, loadDatabase, stampOf, type LoadedDatabase } from './database.js';
import { GeoDatabaseError, GeoWatchError } from './errors.js';
import type { ParsedIp } from '../core/ip.js';
import { lookupAddress, lookupParsed } from './special.js';

/** What Doorman asks about a client address. */
export interface CountryLookup {
  /**
   * Upper-case ISO 3166-1 alpha-2 code, or null (special-purpose, unknown,
   * not an address). Never throws. `parsed`: the same address as the core
   * parsed it (core/ip.ts), read instead of `ip`'s text by the
   * special-purpose check; `ip` must then be its canonical text.
   */
  country(ip: string, parsed?: ParsedIp): string | null;
  /** Where the answers come from, for logs and status. */
  readonly source: string;
  /** Stops watching for updates. country() answers null afterwards. */
  close(): void;
}

export type CountryLookupEvent =
  | { readonly type: 'reloaded'; readonly path: string; readonly databaseType: string; readonly buildEpoch: Date }
  | { readonly type: 'reload-failed'; readonly path: string; readonly error: Error };

export interface CountryLookupOptions {
  /** Reload when the file changes. Default: true for a given path, false for the embedded database. */
  readonly watch?: boolean;
  /** Quiet time after the last change event before reloading. Default RELOAD_DEBOUNCE_MS. */
  readonly debounceMs?: number;
  /** Told about every reload and every failed one (the old database stays in service). */
  readonly onEvent?: (event: CountryLookupEvent) => void;
}

/** The npm package of the embedded database and its combined IPv4 + IPv6 file. */
export const EMBEDDED_PACKAGE = '@ip-location-db/geo-whois-asn-country-mmdb';
const EMBEDDED_FILE = 'geo-whois-asn-country.mmdb';

/**
 * An updater writing in place fires a change event per write; half a second
 * of quiet is long after its last one and short against daily updates.
 */
export const RELOAD_DEBOUNCE_MS = 500;
/** After the watched directory fails (removed, unmounted), try to watch it again this often. */
const WATCH_RETRY_MS = 10_000;

/** A CountryLookup over a MaxMind DB file. Make one with openCountryLookup(). */
export class MmdbCountryLookup implements CountryLookup {
  readonly source: string;
  /** Absolute path of the file served. */
  readonly path: string;
  private db: LoadedDatabase | null;
  private readonly onEvent: (event: CountryLookupEvent) => void;
  private readonly debounceMs: number;
  private readonly watchDirs: readonly string[];
  private readonly watchNames: ReadonlySet<string>;
  private watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;
  private inFlight: Promise<boolean> | null = null;
  private queued: Promise<boolean> | null = null;
  private closed = false;

  private constructor(path: string, source: string, db: LoadedDatabase, options: CountryLookupOptions, targets: readonly string[]) {
    this.path = path;
    this.source = source;
    this.db = db;
    this.onEvent = options.onEvent ?? (() => {});
    this.debounceMs = options.debounceMs ?? RELOAD_DEBOUNCE_MS;
    this.watchDirs = [...new Set(targets.map((t) => dirname(t)))];
    this.watchNames = new Set(targets.map((t) => basename(t)));
  }

  /** Opens and validates `path`; throws GeoDatabaseError naming what is wrong. */
  static async open(path: string, source: string, options: CountryLookupOptions, watchByDefault: boolean): Promise<MmdbCountryLookup> {
    const abs = resolve(path);
    const db = await loadDatabase(abs);
    const targets = [abs];
    const real = await realpath(abs).catch(() => abs);
    if (real !== abs) targets.push(real);
    const lookup = new MmdbCountryLookup(abs, source, db, options, targets);
    if (options.watch ?? watchByDefault) lookup.startWatching();
    return lookup;
  }

  country(ip: string, parsed?: ParsedIp): string | null {
    const db = this.db;
    if (db === null) return null;
    // The reader (mmdb-lib's Reader.get) takes only text, which it parses itself: it is given the canonical text.
    const key = parsed === undefined ? lookupAddress(ip) : lookupParsed(parsed, ip);
    if (key === null) return null;
    // An IPv4-only tree would answer an IPv6 address from its first 32 bits.
    if (db.ipv4Only && key.indexOf(':') !== -1) return null;
    try {
      return countryCode(db.reader.get(key));
    } catch {
      return null; // unreachable for a validated tree; a lookup must never take a connection down
    }
  }

  /** database_type from the metadata of the database in service. */
  get databaseType(): string {
    return this.db?.databaseType ?? '';
  }

  /** build_epoch from the metadata of the database in service. */
  get buildEpoch(): Date | null {
    return this.db?.buildEpoch ?? null;
  }

  /**
   * Reads and validates the file again and puts it in service: true when it
   * did, false when the file was refused (the old database stays, and the
   * failure is reported through onEvent) or the lookup is closed. A call while
   * one is under way runs once more after it, since the file may have changed
   * after it was read.
   */
  reload(): Promise<boolean> {
    return this.run(true);
  }

  close(): void {
    this.closed = true;
    this.db = null;
    this.stopWatching();
    if (this.debounce !== null) clearTimeout(this.debounce);
    if (this.retry !== null) clearTimeout(this.retry);
    this.debounce = null;
    this.retry = null;
  }

  private run(force: boolean): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.inFlight !== null) {
      this.queued ??= this.inFlight.then(() => {
        this.queued = null;
        return this.run(force);
      });
      return this.queued;
    }
    const p = this.loadAndSwap(force).finally(() => {
      if (this.inFlight === p) this.inFlight = null;
    });
    this.inFlight = p;
    return p;
  }

  private async loadAndSwap(force: boolean): Promise<boolean> {
    try {
      if (!force) {
        const st = await stat(this.path, { bigint: true }).catch(() => null);
        if (st !== null && stampOf(st) === this.db?.stamp) return true;
      }
      const next = await loadDatabase(this.path);
      if (this.closed) return false;
      this.db = next;
      this.onEvent({ type: 'reloaded', path: this.path, databaseType: next.databaseType, buildEpoch: next.buildEpoch });
      return true;
    } catch (err) {
      if (!this.closed) this.onEvent({ type: 'reload-failed', path: this.path, error: asError(err) });
      return false;
    }
  }

  private startWatching(): void {
    for (const dir of this.watchDirs) {
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => {
          if (filename !== null && !this.watchNames.has(String(filename))) return;
          this.schedule();
        });
        w.on('error', (err) => this.watchFailed(dir, err));
        this.watchers.push(w);
      } catch (err) {
        this.watchFailed(dir, err);
        return;
      }
    }
  }

  private stopWatching(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.run(false);
    }, this.debounceMs);
    this.debounce.unref();
  }

  private watchFailed(dir: string, err: unknown): void {
    this.stopWatching();
    if (this.closed) return;
    const error = new GeoWatchError(this.path, `cannot watch ${dir} for updates (trying again every ${WATCH_RETRY_MS / 1000}s): ${asError(err).message}`, { cause: err });
    this.onEvent({ type: 'reload-failed', path: this.path, error });
    if (this.retry !== null) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.closed) return;
      this.startWatching();
      // Whatever changed while nobody watched.
      if (this.watchers.length === this.watchDirs.length) this.schedule();
    }, WATCH_RETRY_MS);
    this.retry.unref();
  }
}

/**
 * Opens a country database: `path`, or with none the embedded CC0 database
 * (ip-location-db's geo-whois-asn-country, IPv4 and IPv6 in one file).
 * Throws GeoDatabaseError when the file cannot be used.
 */
export async function openCountryLookup(path?: string, options: CountryLookupOptions = {}): Promise<MmdbCountryLookup> {
  if (path !== undefined) return MmdbCountryLookup.open(path, resolve(path), options, true);
  const file = embeddedDatabasePath();
  return MmdbCountryLookup.open(file, await embeddedSource(file), options, false);
}

/** The embedded database's file. Throws GeoDatabaseError when its package is not installed. */
export function embeddedDatabasePath(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve(`${EMBEDDED_PACKAGE}/package.json`);
    return join(dirname(pkg), EMBEDDED_FILE);
  } catch (err) {
    throw new GeoDatabaseError(EMBEDDED_PACKAGE, `the embedded database is not installed (npm install ${EMBEDDED_PACKAGE})`, { cause: err });
  }
}

async function embeddedSource(file: string): Promise<string> {
  try {
    const pkg = JSON.parse(await readFile(join(dirname(file), 'package.json'), 'utf8')) as { version?: unknown };
    return `${EMBEDDED_PACKAGE}@${String(pkg.version)} (embedded)`;
  } catch {
    return `${EMBEDDED_PACKAGE} (embedded)`;
  }
}
