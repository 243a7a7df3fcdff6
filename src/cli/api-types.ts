/**
 * The admin API's JSON as the CLI reads it, transcribed from
 * docs/admin-api.md. Fields the CLI does not show are left out or loosely
 * typed, so a server that adds fields does not break the client.
 */

export interface ApiConnection {
  readonly id: string;
  readonly service: string;
  readonly protocol: string;
  readonly client: { readonly address: string; readonly port: number };
  readonly country: string | null;
  readonly listen: string;
  readonly backend: string;
  readonly started_at: string;
  readonly age_s: number;
  readonly bytes_in: number;
  readonly bytes_out: number;
  readonly encrypted: boolean;
  /** The host holding it (its store.node in a fleet). */
  readonly node?: string | null;
}

export interface ApiBan {
  readonly target: string;
  readonly until: string;
  readonly left_s: number;
  readonly reason: string;
  readonly created_at: string;
  readonly origin: string;
  readonly strike: number;
}

export interface ApiRule {
  readonly kind: 'allow' | 'deny';
  readonly codes: readonly string[];
  readonly mode: 'enforce' | 'dry-run';
  readonly source: 'config' | 'runtime';
}

export interface ApiDecision {
  readonly action: 'allow' | 'refuse';
  readonly rule: unknown;
  readonly reason: string;
  readonly retry_after_s?: number;
  readonly dry_run?: ReadonlyArray<{ readonly rule: unknown; readonly reason: string }>;
  readonly exempt?: unknown;
  readonly country?: string | null;
}

export interface ApiStatus {
  readonly version?: string;
  readonly started_at?: string;
  readonly uptime_s?: number;
  readonly connections: number;
  readonly services: Readonly<Record<string, { readonly protocol?: string; readonly connections: number; readonly listen?: readonly string[] }>>;
  readonly countries?: Readonly<Record<string, number>>;
  readonly engine?: { readonly entries: number };
  readonly store?: { readonly type: string; readonly node: string; readonly backend?: string; readonly up?: boolean; readonly failovers?: number };
  readonly bans?: number;
  /** Front-ends that are no service's listener: haproxy_spoe. */
  readonly front_ends?: Readonly<Record<string, unknown>>;
  /** The CrowdSec bouncer; null when off. */
  readonly crowdsec?: {
    readonly lapi_url: string;
    readonly role: string;
    readonly poller?: string;
    readonly up: boolean | null;
    readonly last_success: string | null;
    readonly last_error: { readonly code: string; readonly message: string } | null;
    readonly bans: number;
    readonly skipped?: Readonly<Record<string, number>>;
  } | null;
}

export interface ApiConnections {
  readonly total: number;
  readonly items: readonly ApiConnection[];
  /** Fleet mode: live nodes that did not answer in time. */
  readonly missing_nodes?: readonly string[];
}

export interface ApiKick {
  readonly dry_run: boolean;
  readonly hits: readonly ApiConnection[];
  readonly kicked: number;
  readonly ban: ApiBan | null;
}

export interface ApiBanResult {
  readonly dry_run: boolean;
  readonly hits: readonly ApiConnection[];
  readonly ban: ApiBan | null;
}

export interface ApiCountryChange {
  readonly dry_run: boolean;
  readonly hits: readonly ApiConnection[];
}

export interface ApiCountries {
  readonly services: Readonly<Record<string, { readonly connect: ApiRule | null; readonly auth: ApiRule | null }>>;
}

export interface ApiCheck {
  readonly address: string;
  readonly service: string;
  /** What the counts are kept under: the address, or the range Postfix 3.8+ smtpd counts it in ("::/84"). */
  readonly counted_as?: string;
  readonly country: string | null;
  readonly connect: ApiDecision;
  readonly auth: ApiDecision;
}

export interface ApiLift {
  /** The one command that lifts it, when one does. */
  readonly command: string | null;
  readonly how: string;
}

export interface ApiBanRef {
  readonly target: string;
  readonly layer: string;
  readonly origin: string;
  readonly strike: number;
  readonly until: string;
}

export interface ApiWhy {
  readonly address: string;
  readonly country: string | null;
  readonly bans: ReadonlyArray<ApiBanRef & { readonly left_s: number; readonly reason: string; readonly created_at: string; readonly nodes: readonly string[]; readonly lift: ApiLift }>;
  readonly refusals: ReadonlyArray<{
    readonly at: string;
    readonly first_at: string;
    readonly times: number;
    readonly node: string;
    readonly service: string;
    readonly by: string;
    readonly rule: string;
    readonly cause: string;
    readonly reason: string;
    readonly count: number | null;
    readonly limit: number | null;
    readonly key: string | null;
    readonly retry_after_s: number;
    readonly until: string | null;
    readonly in_force: boolean;
    readonly ban: ApiBanRef | null;
    readonly lift: ApiLift;
  }>;
  readonly missing_nodes?: readonly string[];
  readonly record?: { readonly addresses: number; readonly per_address: number; readonly max_age_s: number };
}
