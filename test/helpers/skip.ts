/**
 * Loud skips: a test that cannot run here says so on stderr in a banner no
 * one can miss, and CI installs every peer so that none is printed there.
 */

/** Prints the banner for a test (or suite) that did not run, and why. */
export function skipBanner(why: string): void {
  process.stderr.write(`\n${'!'.repeat(78)}\n!!! SKIPPED: ${why}\n${'!'.repeat(78)}\n\n`);
}

/**
 * For a suite run once per mail-server generation: the skip reason (its
 * banner printed once) when the generation cannot run here, and test titles
 * that name the generation.
 */
export function perGeneration(label: string, unavailable: string | undefined, what: string): { skip: string | false; title: (t: string) => string } {
  const skip = unavailable === undefined ? false : `${unavailable}; ${what} for ${label} did not run`;
  if (skip) skipBanner(skip);
  return { skip, title: (t) => `${label}: ${t}` };
}
