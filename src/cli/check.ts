/**
 * `doorman check ADDRESS --service NAME --offline`: what each phase would
 * decide for a client, and why, from the configuration alone: the country,
 * exceptions, overrides and country rules, with empty counts. (Without
 * --offline the daemon is asked, with its live counts and bans: see
 * ./commands/check.ts.)
 */
import { pino } from 'pino';
import type { Config } from '../config/load.js';
import { systemClock } from '../core/clock.js';
import type { Decision } from '../core/decision.js';
import { Gatekeeper } from '../core/gate.js';
import { rateAlgorithm } from '../store/rate.js';
import { openCountryLookup } from '../geo/country.js';
import { specialPurpose } from '../geo/special.js';
import { MemoryStore } from '../store/memory.js';

export interface CheckResult {
  readonly address: string;
  readonly service: string;
  readonly country: string | null;
  /** The special-purpose block the address is in, if any. */
  readonly special: string | null;
  readonly phases: Record<'connect' | 'auth', { action: 'allow' | 'refuse'; rule: string | null; reason: string; dry_run: Array<{ rule: string; reason: string }> }>;
}

export async function runCheck(config: Config, address: string, service: string): Promise<CheckResult> {
  const rules = config.rules;
  const geo = await openCountryLookup(config.geo.database ?? undefined, { watch: false });
  const rate = rateAlgorithm(config.engine.rate_algorithm, config.engine.rate_time_unit);
  // The same core the daemon builds, over an empty table of its own.
  const gate = Gatekeeper.open({
    store: new MemoryStore({ rate, maxEntries: 1000 }),
    rules,
    countries: geo,
    clock: systemClock,
    log: pino({ level: 'silent' }),
    rateUnitMs: rate.unitMs,
    statusUpdateMs: config.engine.status_update_time,
  });
  try {
    const phase = (d: Decision) => ({
      action: d.action,
      rule: d.refusal?.rule ?? null,
      reason: d.refusal?.reason ?? d.exempt ?? 'no rule refuses',
      dry_run: d.dryRun.map((r) => ({ rule: r.rule, reason: r.reason })),
    });
    return {
      address,
      service,
      country: geo.country(address),
      special: specialPurpose(address),
      phases: { connect: phase(await gate.checkConnect(service, address)), auth: phase(await gate.checkAuth(service, address)) },
    };
  } finally {
    await gate.stop();
    geo.close();
  }
}

export function formatCheck(r: CheckResult): string {
  const lines = [`${r.address} (${r.service}): country ${r.country ?? `none${r.special ? ` (${r.special})` : ''}`}`];
  for (const [name, p] of Object.entries(r.phases)) {
    lines.push(`  ${name.padEnd(8)} ${p.action.padEnd(7)} ${p.rule ? `${p.rule}: ` : ''}${p.reason}`);
    for (const d of p.dry_run) lines.push(`  ${''.padEnd(8)} dry-run would refuse: ${d.rule}: ${d.reason}`);
  }
  return lines.join('\n') + '\n';
}
