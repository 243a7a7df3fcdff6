/**
 * Formatting for people, in the browser's language: country names
 * (Intl.DisplayNames, no table of our own), durations, byte counts, times;
 * and `h`, the one small helper that builds DOM nodes without innerHTML, so
 * nothing the server sends is ever parsed as markup.
 */

// The codes Doorman accepts, for the country pickers (Intl can name a region but not list them):
// served by the admin server from the one table in src/core/country-codes.ts.
import { COUNTRY_CODES } from './country-codes.js';
export { COUNTRY_CODES };

/** @type {Intl.DisplayNames | null} */
let regionNames = null;
try {
  regionNames = new Intl.DisplayNames([...navigator.languages, 'en'], { type: 'region', fallback: 'code' });
} catch {
  regionNames = null;
}

/** @type {Map<string, string>} */
const nameCache = new Map();

/** The country's name in the browser's language ("Russia" for RU in English); the code when unknown. */
export function countryName(/** @type {string} */ code) {
  let n = nameCache.get(code);
  if (n === undefined) {
    try {
      n = regionNames?.of(code) ?? code;
    } catch {
      n = code;
    }
    nameCache.set(code, n);
  }
  return n;
}

/** "Russia (RU)", or "–" for a connection with no country (private and special-purpose addresses). */
export function countryLabel(/** @type {string | null} */ code) {
  if (code === null || code === '') return '–';
  const n = countryName(code);
  return n === code ? code : `${n} (${code})`;
}

/**
 * What the user typed in a country field, as a code: "ru", "RU" or "Russia" → "RU"; null when it is none.
 * @param {string} input
 * @returns {string | null}
 */
export function parseCountry(input) {
  const s = input.trim();
  // Only a code Doorman accepts: "XX" is no country, whatever its shape.
  const known = (/** @type {string} */ c) => (COUNTRY_CODES.includes(c.toUpperCase()) ? c.toUpperCase() : null);
  if (/^[A-Za-z]{2}$/.test(s)) return known(s);
  const m = /\(([A-Za-z]{2})\)\s*$/.exec(s);
  if (m?.[1]) return known(m[1]);
  const want = s.toLocaleLowerCase();
  if (want === '') return null;
  return COUNTRY_CODES.find((c) => countryName(c).toLocaleLowerCase() === want) ?? null;
}

/** Fills a <datalist> with every country: the code as value, its name as label. */
export function fillCountryList(/** @type {HTMLDataListElement} */ list) {
  const opts = COUNTRY_CODES.map((c) => h('option', { value: c }, countryName(c)));
  opts.sort((a, b) => (a.textContent ?? '').localeCompare(b.textContent ?? ''));
  list.replaceChildren(...opts);
}

const num = new Intl.NumberFormat();
const num1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export const formatNumber = (/** @type {number} */ n) => num.format(n);

/** 42 s, 3 min 05 s, 2 h 07 min, 3 d 4 h: two units at most, precise enough to compare at a glance. */
export function formatDuration(/** @type {number} */ seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(/** @type {number} */ n) {
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? num.format(v) : num1.format(v)} ${UNITS[i]}`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });

/** A time of day for today's events, date and time otherwise. */
export function formatTime(/** @type {string | number | Date} */ t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return '–';
  return Date.now() - d.getTime() < 20 * 3600_000 ? timeFmt.format(d) : dateTimeFmt.format(d);
}

/**
 * Builds an element. Attributes starting with "on" are listeners; `class`, `hidden` and
 * the rest are set as attributes (false and null skip them); children are nodes or text.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v === null || v === undefined) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'number' ? String(c) : c);
  }
  return el;
}

/**
 * `f` at most once per `ms`: the first call runs at once, later ones are folded
 * into one run at the end of the interval. Counters that change with every
 * event are repainted a few times a second, not sixty.
 * @param {() => void} f
 * @param {number} ms
 * @returns {() => void}
 */
export function throttle(f, ms) {
  let last = -Infinity;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  return () => {
    if (timer !== undefined) return;
    const wait = last + ms - performance.now();
    if (wait <= 0) {
      last = performance.now();
      f();
      return;
    }
    timer = setTimeout(() => {
      timer = undefined;
      last = performance.now();
      f();
    }, wait);
  };
}

/** A placeholder row or item for an empty list. */
export function emptyNote(/** @type {string} */ text, colspan = 0) {
  return colspan > 0 ? h('tr', { class: 'empty' }, h('td', { colspan }, text)) : h('li', { class: 'empty' }, text);
}
