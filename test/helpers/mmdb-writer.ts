/**
 * A small writer of MaxMind DB files (binary format 2.0,
 * https://maxmind.github.io/MaxMind-DB/) so tests can make country databases
 * with answers they choose: no real database holds "8.8.8.8 is DE", and the
 * tests of reloading need two that differ.
 *
 * Layout written, as the spec has it:
 *
 *   search tree   node_count nodes of two records (record_size 24, 28 or 32 bits);
 *                 a record < node_count is a node, == node_count "no data",
 *                 > node_count points to node_count + 16 + offset-in-data-section
 *   16 zero bytes the data section separator
 *   data section  one encoded value per distinct record (shared, as real ones are)
 *   "\xAB\xCD\xEFMaxMind.com" then the metadata map
 *
 * An IPv6 tree (the default) holds IPv4 networks under ::/96, where real
 * MaxMind databases keep them and where a reader starts IPv4 lookups (it walks
 * 96 left records from the root). Networks may overlap: a later one wins over
 * the part of an earlier one it covers.
 *
 * Not a production writer: no ::ffff:0:0/96 or 6to4 aliasing, no tree merging.
 */
import { isIP } from 'node:net';

/** A value with an explicit MaxMind DB type, where the JS type is ambiguous. */
export class MmdbTyped {
  constructor(
    readonly type: 'uint16' | 'uint32' | 'uint64' | 'uint128' | 'int32' | 'double' | 'float',
    readonly value: number | bigint,
  ) {}
}

/**
 * A record value. Numbers are uint32 when they are integers in its range,
 * int32 when negative integers in its range, otherwise double; bigints are
 * uint64 (uint128 past 2^64); Uint8Arrays are bytes.
 */
export type MmdbValue = string | boolean | number | bigint | Uint8Array | MmdbTyped | readonly MmdbValue[] | { readonly [key: string]: MmdbValue };

export const mmdbType = {
  uint16: (v: number): MmdbTyped => new MmdbTyped('uint16', v),
  uint32: (v: number): MmdbTyped => new MmdbTyped('uint32', v),
  uint64: (v: number | bigint): MmdbTyped => new MmdbTyped('uint64', v),
  int32: (v: number): MmdbTyped => new MmdbTyped('int32', v),
  double: (v: number): MmdbTyped => new MmdbTyped('double', v),
  float: (v: number): MmdbTyped => new MmdbTyped('float', v),
};

export interface MmdbNetwork {
  /** "8.8.8.0/24", "2001:4860::/32"; a bare address is a /32 or /128. */
  readonly cidr: string;
  readonly data: MmdbValue;
}

export interface MmdbOptions {
  readonly recordSize?: 24 | 28 | 32;
  readonly ipVersion?: 4 | 6;
  readonly databaseType?: string;
  readonly description?: Readonly<Record<string, string>>;
  readonly languages?: readonly string[];
  /** Seconds since the epoch. */
  readonly buildEpoch?: number;
  /** Extra metadata keys, written as given. */
  readonly extraMetadata?: Readonly<Record<string, MmdbValue>>;
}

const METADATA_MARKER = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');
const DATA_SECTION_SEPARATOR = 16;
/** 2024-01-01T00:00:00Z: a fixed build time keeps test databases byte-for-byte reproducible. */
const DEFAULT_BUILD_EPOCH = 1_704_067_200;

type Rec = { readonly kind: 'empty' } | { readonly kind: 'data'; readonly key: string } | { readonly kind: 'node'; readonly node: TreeNode };
interface TreeNode {
  recs: [Rec, Rec];
  id: number;
}
const EMPTY: Rec = { kind: 'empty' };

/** Builds a whole MaxMind DB file in memory. */
export function buildMmdb(networks: readonly MmdbNetwork[], options: MmdbOptions = {}): Buffer {
  const recordSize = options.recordSize ?? 28;
  const ipVersion = options.ipVersion ?? 6;
  const depth = ipVersion === 6 ? 128 : 32;

  const root: TreeNode = { recs: [EMPTY, EMPTY], id: -1 };
  const values = new Map<string, MmdbValue>();
  for (const net of networks) {
    const { bits, length } = networkBits(net.cidr, ipVersion);
    const key = canonicalKey(net.data);
    values.set(key, net.data);
    insert(root, bits, length, depth, { kind: 'data', key });
  }

  const nodes: TreeNode[] = [];
  number(root, nodes);
  const nodeCount = nodes.length;

  const dataParts: Buffer[] = [];
  const offsets = new Map<string, number>();
  let dataSize = 0;
  for (const [key, value] of values) {
    const enc = encode(value);
    offsets.set(key, dataSize);
    dataParts.push(enc);
    dataSize += enc.length;
  }

  const maxRecord = nodeCount + DATA_SECTION_SEPARATOR + dataSize;
  if (maxRecord >= 2 ** recordSize) throw new Error(`mmdb-writer: ${maxRecord} does not fit a ${recordSize}-bit record`);
  const recordValue = (r: Rec): number => {
    if (r.kind === 'empty') return nodeCount;
    if (r.kind === 'node') return r.node.id;
    return nodeCount + DATA_SECTION_SEPARATOR + (offsets.get(r.key) as number);
  };
  const nodeBytes = recordSize / 4;
  const tree = Buffer.alloc(nodeCount * nodeBytes);
  for (const n of nodes) writeNode(tree, n.id * nodeBytes, recordSize, recordValue(n.recs[0]), recordValue(n.recs[1]));

  const metadata: Record<string, MmdbValue> = {
    binary_format_major_version: mmdbType.uint16(2),
    binary_format_minor_version: mmdbType.uint16(0),
    build_epoch: mmdbType.uint64(options.buildEpoch ?? DEFAULT_BUILD_EPOCH),
    database_type: options.databaseType ?? 'GeoLite2-Country',
    description: options.description ?? { en: 'Doorman test database' },
    ip_version: mmdbType.uint16(ipVersion),
    languages: options.languages ?? ['en'],
    node_count: mmdbType.uint32(nodeCount),
    record_size: mmdbType.uint16(recordSize),
    ...options.extraMetadata,
  };
  return Buffer.concat([tree, Buffer.alloc(DATA_SECTION_SEPARATOR), ...dataParts, METADATA_MARKER, encode(metadata)]);
}

/** The record shape of MaxMind's GeoLite2-Country, and of the CC0 ip-location-db databases. */
export type CountryShape = 'maxmind' | 'ip-location-db';

/**
 * A country database: each [cidr, ISO code] pair becomes `{ country: { iso_code } }`
 * (GeoLite2-Country) or `{ country_code }` (ip-location-db, database_type "country ipvAll").
 */
export function buildCountryMmdb(
  networks: readonly (readonly [cidr: string, iso: string])[],
  options: MmdbOptions & { readonly shape?: CountryShape } = {},
): Buffer {
  const shape = options.shape ?? 'maxmind';
  const data = (iso: string): MmdbValue => (shape === 'maxmind' ? { country: { iso_code: iso, names: { en: iso } } } : { country_code: iso });
  const databaseType = options.databaseType ?? (shape === 'maxmind' ? 'GeoLite2-Country' : 'country ipvAll');
  return buildMmdb(
    networks.map(([cidr, iso]) => ({ cidr, data: data(iso) })),
    { ...options, databaseType },
  );
}

// ---- search tree -------------------------------------------------------------

function insert(root: TreeNode, bits: bigint, length: number, depth: number, rec: Rec): void {
  if (length === 0) throw new Error('mmdb-writer: a network of the whole address space is not supported');
  let node = root;
  for (let d = 0; d < length; d++) {
    const bit = Number((bits >> BigInt(depth - 1 - d)) & 1n) as 0 | 1;
    if (d === length - 1) {
      node.recs[bit] = rec;
      return;
    }
    const here = node.recs[bit] as Rec;
    if (here.kind === 'node') {
      node = here.node;
    } else {
      // Split: the part of an earlier network (or "no data") not covered goes down a level.
      const child: TreeNode = { recs: [here, here], id: -1 };
      node.recs[bit] = { kind: 'node', node: child };
      node = child;
    }
  }
}

/** Numbers nodes in pre-order from 0 at the root, as readers require the root to be node 0. */
function number(root: TreeNode, out: TreeNode[]): void {
  const stack = [root];
  while (stack.length > 0) {
    const n = stack.pop() as TreeNode;
    n.id = out.length;
    out.push(n);
    for (const side of [1, 0] as const) {
      const r = n.recs[side];
      if (r.kind === 'node') stack.push(r.node);
    }
  }
}

function writeNode(buf: Buffer, at: number, recordSize: number, left: number, right: number): void {
  if (recordSize === 24) {
    buf.writeUIntBE(left, at, 3);
    buf.writeUIntBE(right, at + 3, 3);
  } else if (recordSize === 28) {
    buf.writeUIntBE(left & 0xffffff, at, 3);
    buf[at + 3] = ((left >>> 24) << 4) | (right >>> 24);
    buf.writeUIntBE(right & 0xffffff, at + 4, 3);
  } else {
    buf.writeUInt32BE(left, at);
    buf.writeUInt32BE(right, at + 4);
  }
}

/** The network as a bigint of the tree's width, IPv4 under ::/96 in an IPv6 tree. */
function networkBits(cidr: string, ipVersion: 4 | 6): { bits: bigint; length: number } {
  const slash = cidr.indexOf('/');
  const addr = slash === -1 ? cidr : cidr.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) throw new Error(`mmdb-writer: not an address: ${cidr}`);
  const width = family === 4 ? 32 : 128;
  const length = slash === -1 ? width : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(length) || length < 0 || length > width) throw new Error(`mmdb-writer: bad prefix length: ${cidr}`);
  const value = family === 4 ? ipv4Bits(addr) : ipv6Bits(addr);
  const hostBits = BigInt(width - length);
  if ((value >> hostBits) << hostBits !== value) throw new Error(`mmdb-writer: host bits set in ${cidr}`);
  if (family === 6 && ipVersion === 4) throw new Error(`mmdb-writer: IPv6 network ${cidr} in an IPv4 database`);
  return { bits: value, length: family === 4 && ipVersion === 6 ? 96 + length : length };
}

function ipv4Bits(addr: string): bigint {
  return addr.split('.').reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6Bits(addr: string): bigint {
  let text = addr;
  const dot = text.lastIndexOf('.');
  if (dot !== -1) {
    const colon = text.lastIndexOf(':');
    const v4 = ipv4Bits(text.slice(colon + 1));
    text = `${text.slice(0, colon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

// ---- data section encoding ----------------------------------------------------
// Every value is stored whole: the writer emits no pointers (type 1).

const T_STRING = 2;
const T_DOUBLE = 3;
const T_BYTES = 4;
const T_UINT16 = 5;
const T_UINT32 = 6;
const T_MAP = 7;
const T_INT32 = 8;
const T_UINT64 = 9;
const T_UINT128 = 10;
const T_ARRAY = 11;
const T_BOOLEAN = 14;
const T_FLOAT = 15;

/** The control byte(s): type in the top 3 bits (0 = extended, next byte type - 7), then the size. */
function control(type: number, size: number): Buffer {
  let first = type <= 7 ? type << 5 : 0;
  const sizeBytes: number[] = [];
  if (size < 29) {
    first |= size;
  } else if (size < 29 + 256) {
    first |= 29;
    sizeBytes.push(size - 29);
  } else if (size < 285 + 65536) {
    first |= 30;
    const v = size - 285;
    sizeBytes.push(v >>> 8, v & 0xff);
  } else {
    first |= 31;
    const v = size - 65821;
    sizeBytes.push((v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  }
  return Buffer.from(type <= 7 ? [first, ...sizeBytes] : [first, type - 7, ...sizeBytes]);
}

function unsigned(type: number, value: number | bigint, maxBytes: number): Buffer {
  let v = BigInt(value);
  if (v < 0n || v >= 1n << BigInt(8 * maxBytes)) throw new Error(`mmdb-writer: ${value} out of range`);
  const bytes: number[] = [];
  while (v > 0n) {
    bytes.unshift(Number(v & 0xffn));
    v >>= 8n;
  }
  return Buffer.concat([control(type, bytes.length), Buffer.from(bytes)]);
}

function encode(value: MmdbValue): Buffer {
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([control(T_STRING, bytes.length), bytes]);
  }
  if (typeof value === 'boolean') return control(T_BOOLEAN, value ? 1 : 0);
  if (typeof value === 'bigint') return value < 1n << 64n ? unsigned(T_UINT64, value, 8) : unsigned(T_UINT128, value, 16);
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) return unsigned(T_UINT32, value, 4);
    if (Number.isInteger(value) && value < 0 && value >= -0x80000000) return encodeTyped(mmdbType.int32(value));
    return encodeTyped(mmdbType.double(value));
  }
  if (value instanceof MmdbTyped) return encodeTyped(value);
  if (value instanceof Uint8Array) return Buffer.concat([control(T_BYTES, value.length), Buffer.from(value)]);
  if (Array.isArray(value)) {
    const items = value as readonly MmdbValue[];
    return Buffer.concat([control(T_ARRAY, items.length), ...items.map(encode)]);
  }
  const entries = Object.entries(value as { readonly [key: string]: MmdbValue });
  return Buffer.concat([control(T_MAP, entries.length), ...entries.flatMap(([k, v]) => [encode(k), encode(v)])]);
}

function encodeTyped(t: MmdbTyped): Buffer {
  switch (t.type) {
    case 'uint16':
      return unsigned(T_UINT16, t.value, 2);
    case 'uint32':
      return unsigned(T_UINT32, t.value, 4);
    case 'uint64':
      return unsigned(T_UINT64, t.value, 8);
    case 'uint128':
      return unsigned(T_UINT128, t.value, 16);
    case 'int32': {
      const b = Buffer.alloc(4);
      b.writeInt32BE(Number(t.value));
      return Buffer.concat([control(T_INT32, 4), b]);
    }
    case 'double': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(Number(t.value));
      return Buffer.concat([control(T_DOUBLE, 8), b]);
    }
    case 'float': {
      const b = Buffer.alloc(4);
      b.writeFloatBE(Number(t.value));
      return Buffer.concat([control(T_FLOAT, 4), b]);
    }
  }
}

/** A key that is equal for equal values, so identical records share one data entry. */
function canonicalKey(value: MmdbValue): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return `bigint:${v}`;
    if (v instanceof MmdbTyped) return { typed: v.type, value: String(v.value) };
    if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
    return v;
  });
}
