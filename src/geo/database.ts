/**
 * Reading a MaxMind DB country database into memory and proving it usable
 * before anything is answered from it.
 *
 * Validation walks the whole search tree once (every reachable record must be
 * a node, "no data", or a pointer into the data section) and decodes every
 * distinct data record through the reader, from an address that leads to it;
 * at least one must carry a country. So a broken file is refused at open or
 * reload, with the reason, instead of throwing in the middle of a lookup. For
 * the embedded database this takes about 65 ms (bench/geo prints it) and
 * blocks the event loop for most of that, once per update.
 *
 * Record shapes read: `country.iso_code` (MaxMind GeoLite2/GeoIP2 Country and
 * City, DB-IP) and `country_code` (the ip-location-db databases).
 */
import { open } from 'node:fs/promises';
import { Reader, type Response } from 'maxmind';
import { GeoDatabaseError } from './errors.js';

/** The spec caps the metadata section, marker included, at 128 KiB; the marker is searched for no further from the end. */
const METADATA_MAX_BYTES = 128 * 1024;
/**
 * GeoIP2-City is about 130 MB and the country databases under 10 MB; anything
 * past this is not a country database, and reading it would cost that memory
 * twice during a reload.
 */
const MAX_DATABASE_BYTES = 1024 * 1024 * 1024;
/** Between the search tree and the data section (spec). */
const DATA_SECTION_SEPARATOR = 16;
/**
 * The reader decodes a record once and caches it by offset. Country databases
 * have a few hundred distinct records; a city database can have a million, so
 * the cache is emptied when it reaches this size rather than grow without end.
 */
const DECODE_CACHE_MAX = 10_000;
/** database_type values of databases whose records carry a country. */
const COUNTRY_DATABASE_TYPE = /country|city|enterprise/i;
const METADATA_MARKER = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');

interface CountryRecord {
  readonly country?: { readonly iso_code?: unknown } | null;
  readonly country_code?: unknown;
}

/** One validated database. Replaced whole on reload, never changed. */
export interface LoadedDatabase {
  readonly reader: Reader<Response>;
  readonly ipv4Only: boolean;
  readonly databaseType: string;
  readonly buildEpoch: Date;
  /** Identity of the file read (device, inode, size, times), to skip events that changed nothing. */
  readonly stamp: string;
}

/** A bounded decode cache: a Map is cheaper per hit than an LRU, and the bound only matters for city databases. */
class DecodeCache {
  private readonly map = new Map<string | number, unknown>();
  get(key: string | number): unknown {
    return this.map.get(key);
  }
  set(key: string | number, value: unknown): void {
    if (this.map.size >= DECODE_CACHE_MAX) this.map.clear();
    this.map.set(key, value);
  }
}

/** The upper-case ISO code of a record, or null. */
export function countryCode(record: Response | null): string | null {
  if (record === null || typeof record !== 'object') return null;
  const r = record as CountryRecord;
  const c = r.country;
  return isoCode(c !== undefined && c !== null && typeof c === 'object' ? c.iso_code : r.country_code);
}

function isoCode(value: unknown): string | null {
  if (typeof value !== 'string' || value.length !== 2) return null;
  const a = value.charCodeAt(0);
  const b = value.charCodeAt(1);
  if (a >= 65 && a <= 90 && b >= 65 && b <= 90) return value; // the usual case: no new string
  const up = value.toUpperCase();
  const ua = up.charCodeAt(0);
  const ub = up.charCodeAt(1);
  return ua >= 65 && ua <= 90 && ub >= 65 && ub <= 90 ? up : null;
}

/** Identity of a file's current version: a rename gives a new inode, an in-place write new times. */
export function stampOf(st: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** Reads and validates a database file; GeoDatabaseError says what is wrong. */
export async function loadDatabase(path: string): Promise<LoadedDatabase> {
  let buf: Buffer;
  let stamp: string;
  try {
    // One handle for stat and read, so both describe the same file even if it is renamed over meanwhile.
    const fh = await open(path, 'r');
    try {
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) throw new GeoDatabaseError(path, 'not a regular file');
      if (st.size > BigInt(MAX_DATABASE_BYTES)) throw new GeoDatabaseError(path, `${st.size} bytes, more than the ${MAX_DATABASE_BYTES} a country database can be`);
      stamp = stampOf(st);
      buf = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof GeoDatabaseError) throw err;
    throw new GeoDatabaseError(path, `cannot read: ${asError(err).message}`, { cause: err });
  }
  return { ...validate(path, buf), stamp };
}

function validate(path: string, buf: Buffer): Omit<LoadedDatabase, 'stamp'> {
  const fail = (problem: string, cause?: unknown): GeoDatabaseError => new GeoDatabaseError(path, problem, cause === undefined ? undefined : { cause });
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) throw fail('gzip-compressed; decompress it first (gunzip)');
  const marker = buf.lastIndexOf(METADATA_MARKER);
  if (marker === -1 || marker < buf.length - METADATA_MAX_BYTES) {
    throw fail(`not a MaxMind DB file, or cut short: no metadata marker in its last ${METADATA_MAX_BYTES / 1024} KiB (${buf.length} bytes read)`);
  }
  let reader: Reader<Response>;
  try {
    reader = new Reader<Response>(buf, { cache: new DecodeCache() });
  } catch (err) {
    throw fail(`metadata does not decode (cut short, or not a MaxMind DB file): ${asError(err).message}`, err);
  }
  const md = reader.metadata;
  if (md.binaryFormatMajorVersion !== 2) throw fail(`binary format ${String(md.binaryFormatMajorVersion)}.x, expected 2.x`);
  if (md.ipVersion !== 4 && md.ipVersion !== 6) throw fail(`ip_version ${String(md.ipVersion)}, expected 4 or 6`);
  if (typeof md.databaseType !== 'string' || !COUNTRY_DATABASE_TYPE.test(md.databaseType)) {
    throw fail(`database_type ${JSON.stringify(md.databaseType)} is not a country database (expected one naming Country, City or Enterprise)`);
  }
  if (!Number.isInteger(md.nodeCount) || md.nodeCount <= 0) throw fail(`node_count ${String(md.nodeCount)}`);
  const dataStart = md.searchTreeSize + DATA_SECTION_SEPARATOR;
  if (dataStart > marker) throw fail(`search tree of ${md.nodeCount} nodes does not fit in the file: cut short?`);
  for (let i = md.searchTreeSize; i < dataStart; i++) {
    if (buf[i] !== 0) throw fail('no data section separator after the search tree: node_count or record_size is wrong, or the file is corrupt');
  }
  checkTreeAndData(path, buf, reader, marker - dataStart);
  const buildEpoch = md.buildEpoch instanceof Date && !Number.isNaN(md.buildEpoch.getTime()) ? md.buildEpoch : new Date(0);
  return { reader, ipv4Only: md.ipVersion === 4, databaseType: md.databaseType, buildEpoch };
}

/**
 * Walks every node reachable from the root once (trees share subtrees: real
 * IPv6 databases alias ::ffff:0:0/96 and 2002::/16 to the IPv4 one) and decodes
 * every distinct data record by looking up an address that reaches it.
 */
function checkTreeAndData(path: string, buf: Buffer, reader: Reader<Response>, dataSize: number): void {
  const md = reader.metadata;
  const nodeCount = md.nodeCount;
  const nodeBytes = md.nodeByteSize;
  const recordSize = md.recordSize;
  const depthMax = md.ipVersion === 6 ? 128 : 32;
  const visited = new Uint8Array(nodeCount);
  const addr = new Uint8Array(16);
  const seenData = new Set<number>();
  let withCountry = 0;

  const record = (node: number, right: number): number => {
    const at = node * nodeBytes;
    if (recordSize === 24) return right ? buf.readUIntBE(at + 3, 3) : buf.readUIntBE(at, 3);
    if (recordSize === 28) {
      const mid = buf[at + 3] as number;
      return right ? ((mid & 0x0f) * 0x1000000) + buf.readUIntBE(at + 4, 3) : ((mid >>> 4) * 0x1000000) + buf.readUIntBE(at, 3);
    }
    return right ? buf.readUInt32BE(at + 4) : buf.readUInt32BE(at);
  };

  const visit = (node: number, depth: number): void => {
    visited[node] = 1;
    for (let side = 0; side < 2; side++) {
      if (side === 1) addr[depth >>> 3] = (addr[depth >>> 3] as number) | (0x80 >>> (depth & 7));
      const r = record(node, side);
      if (r < nodeCount) {
        if (depth + 1 >= depthMax) throw new GeoDatabaseError(path, `search tree deeper than ${depthMax} bits at node ${node}: corrupt`);
        if (visited[r] === 0) visit(r, depth + 1);
      } else if (r > nodeCount) {
        const offset = r - nodeCount - DATA_SECTION_SEPARATOR;
        if (offset < 0 || offset >= dataSize) throw new GeoDatabaseError(path, `node ${node} points outside the data section: corrupt or cut short`);
        if (!seenData.has(r)) {
          seenData.add(r);
          if (checkRecord(path, reader, addr, depth + 1, md.ipVersion)) withCountry++;
        }
      }
    }
    addr[depth >>> 3] = (addr[depth >>> 3] as number) & ~(0x80 >>> (depth & 7));
  };
  visit(0, 0);
  if (withCountry === 0) throw new GeoDatabaseError(path, 'no record carries a country (country.iso_code or country_code): not a country database');
}

/** Looks up the first address of a network found in the tree; true when its record has a country. */
function checkRecord(path: string, reader: Reader<Response>, addr: Uint8Array, bits: number, ipVersion: number): boolean {
  const text = ipVersion === 4 ? `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}` : formatIPv6(addr);
  let rec: Response | null;
  try {
    rec = reader.get(text);
  } catch (err) {
    throw new GeoDatabaseError(path, `the record for ${text}/${bits} does not decode: ${asError(err).message}`, { cause: err });
  }
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
    throw new GeoDatabaseError(path, `the record for ${text}/${bits} is not a map`);
  }
  return countryCode(rec) !== null;
}

function formatIPv6(a: Uint8Array): string {
  let s = '';
  for (let i = 0; i < 16; i += 2) s += (i === 0 ? '' : ':') + (((a[i] as number) << 8) | (a[i + 1] as number)).toString(16);
  return s;
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

