/**
 * The country codes Doorman accepts, one table for every way in: the
 * configuration (services.*.countries.*.allow/deny), the CLI (`doorman block
 * XX`), the admin API (PUT /api/countries/…, POST …/block) and the dashboard
 * (served to it as /assets/country-codes.js, see ../http/admin/dashboard.ts).
 *
 * ISO 3166-1 alpha-2, the 249 officially assigned codes, written out here
 * from the standard's list, by first letter. Reserved, transitional and
 * user-assigned codes (EU, UK, SU, AA, QM–QZ, XA–XZ, ZZ) are refused, with
 * one exception: XK.
 *
 * XK (Kosovo) is user-assigned, not officially assigned, but it is what the
 * country databases Doorman reads (MaxMind GeoLite2, DB-IP, the bundled
 * ip-location-db) return for addresses in Kosovo, and the European
 * Commission and others use it likewise. Refusing it would leave those
 * clients impossible to allow or block by country, so it is accepted.
 */

const ASSIGNED = [
  'AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ',
  'BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ',
  'CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ',
  'DE DJ DK DM DO DZ',
  'EC EE EG EH ER ES ET',
  'FI FJ FK FM FO FR',
  'GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY',
  'HK HM HN HR HT HU',
  'ID IE IL IM IN IO IQ IR IS IT',
  'JE JM JO JP',
  'KE KG KH KI KM KN KP KR KW KY KZ',
  'LA LB LC LI LK LR LS LT LU LV LY',
  'MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ',
  'NA NC NE NF NG NI NL NO NP NR NU NZ',
  'OM',
  'PA PE PF PG PH PK PL PM PN PR PS PT PW PY',
  'QA',
  'RE RO RS RU RW',
  'SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ',
  'TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ',
  'UA UG UM US UY UZ',
  'VA VC VE VG VI VN VU',
  'WF WS',
  'YE YT',
  'ZA ZM ZW',
].join(' ');

/** The 249 officially assigned ISO 3166-1 alpha-2 codes, in alphabetical order. */
export const ISO_3166_ALPHA2: readonly string[] = Object.freeze(ASSIGNED.split(' '));

/** User-assigned codes accepted as well: XK, Kosovo (see the module comment). */
export const ACCEPTED_USER_ASSIGNED: readonly string[] = Object.freeze(['XK']);

/** Every code accepted, in alphabetical order. */
export const COUNTRY_CODES: readonly string[] = Object.freeze([...ISO_3166_ALPHA2, ...ACCEPTED_USER_ASSIGNED].sort());

const accepted: ReadonlySet<string> = new Set(COUNTRY_CODES);

/** What a country code must be, for error messages everywhere. */
export const COUNTRY_CODE_EXPECTED = 'an ISO 3166-1 alpha-2 country code (officially assigned, or XK for Kosovo) such as DE';

/** The code in capitals when `input` (any case, surrounding spaces ignored) is one Doorman accepts, else null. */
export function normaliseCountry(input: string): string | null {
  const code = input.trim().toUpperCase();
  return accepted.has(code) ? code : null;
}

/** The message for a code that is not accepted: names it and says what is expected. */
export function badCountryMessage(input: string): string {
  return `${JSON.stringify(input)} is not a country code: expected ${COUNTRY_CODE_EXPECTED}`;
}
