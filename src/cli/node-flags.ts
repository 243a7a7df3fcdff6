/**
 * Node flags the daemon runs with. V8 reads them only when the process
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
