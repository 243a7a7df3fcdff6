/**
 * Node flags (and environment) the daemon runs with. V8 reads them only when the process
 * starts, so they are on every command line that starts Doorman: the
 * shebang of ./main.ts, `npm start` in package.json, and whatever spawns it
 * (tests, benchmarks) through this constant. A unit test keeps the three in
 * step.
 *
 * --max-semi-space-size=2 (MiB): with the default, V8 let the young
 * generation grow to about 12 MiB under anvil load and each scavenge took
 * 0.8 ms (1.4 ms at p90), stalling every request that arrived meanwhile. With
 * 2 MiB scavenges are more frequent but short; measured at 40,000 req/s
 * offered (bench/anvil), p99 fell from 650-1,165 µs to about 470 µs, and at
 * 64 saturating clients from 1.4 ms to 0.7 ms, at the same throughput.
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];

/**
 * Environment the daemon runs with, set on the same command lines (glibc
 * reads it only at process start).
 *
 * MALLOC_TRIM_THRESHOLD_=128 MiB: relaying bulk data, Node allocates a fresh
 * 64 KiB buffer per socket read and a GC frees them tens of MiB at a time;
 * with glibc's dynamic threshold the freed heap top went back to the kernel
 * and came straight back as a page fault per 4 KiB relayed (~200,000 faults
 * and ~1 s of system time per GiB). Keeping up to 128 MiB mapped after a
 * burst took bench/proxy's bulk rate from 582 to 807 MiB/s on this machine,
 * sessions unchanged. Other C libraries ignore it.
 */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_TRIM_THRESHOLD_: '134217728' };
