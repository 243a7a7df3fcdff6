/**
 * The geo benchmark: what Doorman's country lookup costs on top of the
 * `maxmind` Reader it wraps, on the embedded CC0 database.
 *
 * Both answer the same list of addresses (random global IPv4 and IPv6 from a
 * fixed seed, so every run asks the same questions): the bare Reader.get() as
 * maxmind.open() sets it up, and CountryLookup.country(), which also parses and
 * judges the address (./src/geo/special.ts) and picks the ISO code out of the
 * record. Each round times one pass per contender, interleaved so drift hits
 * both alike; the table shows the median round. The aim: Doorman within 20%
 * of the bare reader. A second table puts the special-purpose check beside
 * node:net's BlockList over the same blocks (a yes/no answer only), the reason
 * the check is hand-written.
 *
 * Settings (environment):
 *   BENCH_GEO_ROUNDS  measured rounds (default 9, after 2 warm-up rounds)
 *   BENCH_GEO_V4      IPv4 addresses in the list (default 100000)
 *   BENCH_GEO_V6      IPv6 addresses in the list (default 20000)
 */
import { BlockList } from 'node:net';
import maxmind, { type Response } from 'maxmind';
import { embeddedDatabasePath, openCountryLookup } from '../../src/geo/country.js';
import { SPECIAL_BLOCKS, specialPurpose } from '../../src/geo/special.js';
import { envInt } from '../env.js';

const SEED = 0x5eed_2026;
const WARMUP_ROUNDS = 2;
/** The aim: Doorman's lookups/s at least this share of the bare reader's. */
const AIM_RATIO = 0.8;
/**
 * IPv6 space the registries have handed out (RIR /12s, and a few busy /32s),
 * so IPv6 lookups walk the tree as deep as real clients' do instead of leaving
 * it at once in unallocated space.
 */
const V6_PREFIXES: readonly (readonly [number, number])[] = [
  [0x2001_4860, 32], [0x2400_0000, 12], [0x2600_0000, 12], [0x2800_0000, 12], [0x2a00_0000, 12], [0x2c00_0000, 12], [0x2a02_06b8, 32], [0x2001_0200, 23],
];

/** mulberry32: small, fast, and the same sequence everywhere for a seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function addressList(v4Count: number, v6Count: number): string[] {
  const next = rng(SEED);
  const out: string[] = [];
  while (out.length < v4Count) {
    const a = next();
    const ip = `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
    if (specialPurpose(ip) === null) out.push(ip);
  }
  while (out.length < v4Count + v6Count) {
    const [prefix, len] = V6_PREFIXES[next() % V6_PREFIXES.length] as readonly [number, number];
    const keep = len >= 32 ? 0xffffffff : ~(0xffffffff >>> len);
    const first = ((prefix & keep) | (next() & ~keep)) >>> 0;
    const words = [first, next(), next(), next()];
    const ip = words.map((w) => `${(w >>> 16).toString(16)}:${(w & 0xffff).toString(16)}`).join(':');
    if (specialPurpose(ip) === null) out.push(ip);
  }
  return out;
}

interface Contender {
  readonly name: string;
  /** One pass over the list; returns how many answers were not null (so no pass can be optimised away). */
  readonly pass: (list: readonly string[]) => number;
  readonly list: readonly string[];
  readonly rates: number[];
  hits: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function runRounds(contenders: Contender[], rounds: number): void {
  for (let r = 0; r < WARMUP_ROUNDS + rounds; r++) {
    for (const c of contenders) {
      const t0 = process.hrtime.bigint();
      c.hits = c.pass(c.list);
      const ns = Number(process.hrtime.bigint() - t0);
      if (r >= WARMUP_ROUNDS) c.rates.push((c.list.length * 1e9) / ns);
    }
  }
}

function table(title: string, contenders: readonly Contender[], rounds: number): string {
  const rows = contenders.map((c) => `| ${c.name} | ${fmt(median(c.rates))} | ${fmt(Math.min(...c.rates))} | ${fmt(Math.max(...c.rates))} | ${fmt(c.hits)} / ${fmt(c.list.length)} |`);
  return [`### ${title}`, '', `| | per second (median of ${rounds}) | slowest round | fastest round | answers |`, '|---|---:|---:|---:|---:|', ...rows, ''].join('\n');
}

export async function runGeoBench(): Promise<void> {
  const rounds = envInt('BENCH_GEO_ROUNDS', 9, 1, 1000);
  const list = addressList(envInt('BENCH_GEO_V4', 100_000, 1, 10_000_000), envInt('BENCH_GEO_V6', 20_000, 0, 10_000_000));
  const mapped = list.filter((ip) => !ip.includes(':')).map((ip) => `::ffff:${ip}`);

  const file = embeddedDatabasePath();
  const t0 = performance.now();
  const lookup = await openCountryLookup();
  const openMs = performance.now() - t0;
  const bare = await maxmind.open<Response>(file);

  // Both must give the same answers on global addresses, or the race means nothing.
  let disagree = 0;
  for (const ip of list) {
    const rec = bare.get(ip) as { country_code?: string } | null;
    if ((rec?.country_code ?? null) !== lookup.country(ip)) disagree++;
  }

  const lookups: Contender[] = [
    {
      name: 'bare `maxmind` Reader.get()',
      list,
      rates: [],
      hits: 0,
      pass: (l) => {
        let n = 0;
        for (let i = 0; i < l.length; i++) if (bare.get(l[i] as string) !== null) n++;
        return n;
      },
    },
    {
      name: 'Doorman CountryLookup.country()',
      list,
      rates: [],
      hits: 0,
      pass: (l) => {
        let n = 0;
        for (let i = 0; i < l.length; i++) if (lookup.country(l[i] as string) !== null) n++;
        return n;
      },
    },
    {
      name: 'Doorman country(), IPv4 as `::ffff:a.b.c.d`',
      list: mapped,
      rates: [],
      hits: 0,
      pass: (l) => {
        let n = 0;
        for (let i = 0; i < l.length; i++) if (lookup.country(l[i] as string) !== null) n++;
        return n;
      },
    },
  ];
  runRounds(lookups, rounds);

  // BlockList checks an IPv4 address against IPv6 rules too, as ::ffff:a.b.c.d, so
  // the IPv6 catch-alls (::/3 …) and the IPv4-carrying blocks would match every IPv4
  // address: they are left out. It still answers yes/no only, with no block name.
  const blocks = new BlockList();
  for (const b of SPECIAL_BLOCKS) {
    const [addr = '', len = ''] = b.cidr.split('/');
    const v6 = addr.includes(':');
    if (v6 && (b.embeds !== 'none' || Number(len) <= 3)) continue;
    blocks.addSubnet(addr, Number(len), v6 ? 'ipv6' : 'ipv4');
  }
  const checks: Contender[] = [
    {
      name: 'specialPurpose()',
      list,
      rates: [],
      hits: 0,
      pass: (l) => {
        let n = 0;
        for (let i = 0; i < l.length; i++) if (specialPurpose(l[i] as string) !== null) n++;
        return n;
      },
    },
    {
      name: 'node:net BlockList.check() (yes/no only)',
      list,
      rates: [],
      hits: 0,
      pass: (l) => {
        let n = 0;
        for (let i = 0; i < l.length; i++) {
          const ip = l[i] as string;
          if (blocks.check(ip, ip.includes(':') ? 'ipv6' : 'ipv4')) n++;
        }
        return n;
      },
    },
  ];
  runRounds(checks, rounds);
  lookup.close();

  const [bareC, doormanC] = lookups as [Contender, Contender];
  const ratio = median(doormanC.rates) / median(bareC.rates);
  const [spC, blC] = checks as [Contender, Contender];
  const v6 = list.filter((ip) => ip.includes(':')).length;
  process.stdout.write(
    [
      '',
      `## geo: ${lookup.source}, ${fmt(list.length - v6)} IPv4 + ${fmt(v6)} IPv6 global addresses (seed ${SEED.toString(16)}), node ${process.version}`,
      '',
      `Open and validate the database: ${openMs.toFixed(0)} ms. Answers that differ between the two on the list: ${disagree}.`,
      '',
      table('Country lookups', lookups, rounds),
      `Doorman / bare reader: **${ratio.toFixed(2)}** (aim: at least ${AIM_RATIO.toFixed(2)}) — ${ratio >= AIM_RATIO ? 'met' : 'MISSED'}`,
      '',
      table('Special-purpose check', checks, rounds),
      `specialPurpose() / BlockList: **${(median(spC.rates) / median(blC.rates)).toFixed(1)}x**`,
      '',
    ].join('\n'),
  );
}
