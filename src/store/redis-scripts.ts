/**
 * The Redis store's Lua scripts. Each operation that must be atomic is one
 * script, registered once and called by SHA (ioredis defineCommand falls back
 * to EVAL only when the server lost its script cache).
 *
 * One hash per counted key holds everything about it:
 *   w            rate window start, ms since the epoch (the caller's clock)
 *   c<m>, p<m>   current and previous window count of metric m
 *   n|<node>     connections the node holds on the key
 *   e|<node>     when the node's lease on them ends
 * The concurrent count is the sum of n|<node> over nodes whose lease has not
 * ended: a node that dies loses its connections when its lease runs out,
 * without anyone repairing a counter, and a live node renews its leases by
 * writing its own absolute counts (RENEW), which also mends anything a lost
 * reply left wrong. A key's hash expires by itself once it is idle.
 *
 * The rate arithmetic is ./rate.ts's, line for line, so a fleet judges
 * exactly as one host would; test/contract runs both stores on one clock.
 */
import { METRIC_COUNT } from '../core/metrics.js';
import { RATE_MAX } from './rate.js';

/** Shared by every script: load a key's hash, the rate algorithms, leases. */
const PRELUDE = `
local M = ${METRIC_COUNT}
local MAX = ${RATE_MAX}
local function fmt(x) return string.format('%.0f', x) end
local function load(key)
  local h = redis.call('HGETALL', key)
  local s = { c = {}, p = {}, n = {}, e = {}, exists = #h > 0 }
  for i = 1, #h, 2 do
    local f, v = h[i], h[i + 1]
    local t = string.sub(f, 1, 2)
    if f == 'w' then s.w = tonumber(v)
    elseif t == 'n|' then s.n[string.sub(f, 3)] = tonumber(v)
    elseif t == 'e|' then s.e[string.sub(f, 3)] = tonumber(v)
    else
      local kind, m = string.sub(f, 1, 1), tonumber(string.sub(f, 2))
      if kind == 'c' and m then s.c[m] = tonumber(v) elseif kind == 'p' and m then s.p[m] = tonumber(v) end
    end
  end
  for m = 0, M - 1 do s.c[m] = s.c[m] or 0; s.p[m] = s.p[m] or 0 end
  return s
end
local function clear(s) for m = 0, M - 1 do s.c[m] = 0; s.p[m] = 0 end; s.rolled = true end
-- Drops the leases that ended; returns the sum of the live ones.
local function purge(key, s, now)
  local sum = 0
  for node, count in pairs(s.n) do
    local e = s.e[node]
    if e == nil or e <= now then
      redis.call('HDEL', key, 'n|' .. node, 'e|' .. node)
      s.n[node] = nil
    else
      sum = sum + count
    end
  end
  return sum
end
local function livesum(s, now)
  local sum = 0
  for node, count in pairs(s.n) do
    local e = s.e[node]
    if e ~= nil and e > now then sum = sum + count end
  end
  return sum
end
-- sliding-window ('s') and fixed-window ('f'), as in src/store/rate.ts
local function stale(s, now, unit)
  return math.floor(s.w / 1000) + unit / 1000 < math.floor(now / 1000)
end
local function roll(s, now, algo, unit)
  if s.w == nil then clear(s); s.w = now; return end
  if algo == 'f' then
    if stale(s, now, unit) then clear(s); s.w = now end
    return
  end
  local elapsed = now - s.w
  if elapsed < unit then return end
  if elapsed < 2 * unit then
    for m = 0, M - 1 do s.p[m] = s.c[m]; s.c[m] = 0 end
    s.w = s.w + unit
    s.rolled = true
  else
    clear(s); s.w = now
  end
end
local function estimate(s, m, now, unit)
  local prev, curr = s.p[m], s.c[m]
  if prev == 0 then return curr end
  local overlap = unit - (now - s.w) - 1
  return math.min(MAX, curr + math.floor(prev * overlap / unit))
end
local function hit(s, m, now, algo, unit)
  roll(s, now, algo, unit)
  local c = s.c[m]
  if c < MAX then s.c[m] = c + 1 end
  if algo == 'f' then return s.c[m] end
  return estimate(s, m, now, unit)
end
local function rate(s, m, now, algo, unit)
  if s.w == nil then return 0 end
  if algo == 'f' then
    if stale(s, now, unit) then return 0 end
    return s.c[m]
  end
  local elapsed = now - s.w
  if elapsed >= 2 * unit - 1 then return 0 end
  if elapsed >= unit then return math.floor(s.c[m] * (2 * unit - elapsed - 1) / unit) end
  return estimate(s, m, now, unit)
end
-- Writes what hit() changed: the one counter, or after a window moved the window and every counter.
local function saverates(key, s, m)
  if not s.rolled then
    redis.call('HSET', key, 'c' .. m, s.c[m])
    return
  end
  local a = { 'w', fmt(s.w) }
  for i = 0, M - 1 do
    a[#a + 1] = 'c' .. i; a[#a + 1] = s.c[i]
    a[#a + 1] = 'p' .. i; a[#a + 1] = s.p[i]
  end
  redis.call('HSET', key, unpack(a))
end
local function take(key, s, node, n, now, lease)
  s.n[node] = (s.n[node] or 0) + n
  s.e[node] = now + lease
  redis.call('HSET', key, 'n|' .. node, s.n[node], 'e|' .. node, fmt(now + lease))
end
`;

/**
 * ACQUIRE keys… — now, node, lease, algo, unit, ttl.
 * One more connection on each key, held by the node; counts a connection.
 * Returns count and rate per key, flat.
 */
export const ACQUIRE = `${PRELUDE}
local now, node, lease, algo, unit, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
for i, key in ipairs(KEYS) do
  local s = load(key)
  local count = purge(key, s, now) + 1
  take(key, s, node, 1, now, lease)
  local r = hit(s, 0, now, algo, unit)
  saverates(key, s, 0)
  redis.call('PEXPIRE', key, ttl)
  out[#out + 1] = count
  out[#out + 1] = r
end
return out
`;

/**
 * RELEASE keys… — now, node, lease, ttl, then n per key.
 * n connections fewer on each key, if the node holds them. Returns each key's count after.
 */
export const RELEASE = `${PRELUDE}
local now, node, lease, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[4 + i])
  local s = load(key)
  if s.exists and n > 0 then
    purge(key, s, now)
    local held = s.n[node]
    if held ~= nil then
      if held - n <= 0 then
        redis.call('HDEL', key, 'n|' .. node, 'e|' .. node)
        s.n[node] = nil
      else
        s.n[node] = held - n
        redis.call('HSET', key, 'n|' .. node, held - n, 'e|' .. node, fmt(now + lease))
        s.e[node] = now + lease
      end
      redis.call('PEXPIRE', key, ttl)
    end
  end
  out[#out + 1] = livesum(s, now)
end
return out
`;

/**
 * HIT key — now, node, lease, algo, unit, ttl, metric, take.
 * Counts one event of the metric; with take = 1 the node is first given a
 * connection on the key (a holder that did not hold one). Returns rate, count.
 */
export const HIT = `${PRELUDE}
local key = KEYS[1]
local now, node, lease, algo, unit, ttl, m, give = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local s = load(key)
purge(key, s, now)
if give == '1' then
  take(key, s, node, 1, now, lease)
  hit(s, 0, now, algo, unit)
  if m ~= 0 then s.rolled = true end -- two counters changed: write them all
end
local r = hit(s, m, now, algo, unit)
saverates(key, s, m)
redis.call('PEXPIRE', key, ttl)
return { r, livesum(s, now) }
`;

/** READ key — now, algo, unit. Count and every rate, or nil for an unknown key. Changes nothing. */
export const READ = `${PRELUDE}
local now, algo, unit = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local s = load(KEYS[1])
if not s.exists then return nil end
local out = { livesum(s, now) }
for m = 0, M - 1 do out[#out + 1] = rate(s, m, now, algo, unit) end
return out
`;

/**
 * RENEW keys… — now, node, lease, ttl, held per key.
 * Writes the node's own count on each key and extends its lease; 0 drops it.
 */
export const RENEW = `
local now, node, lease, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for i, key in ipairs(KEYS) do
  local held = tonumber(ARGV[4 + i])
  if held > 0 then
    redis.call('HSET', key, 'n|' .. node, held, 'e|' .. node, string.format('%.0f', now + lease))
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  else
    redis.call('HDEL', key, 'n|' .. node, 'e|' .. node)
  end
end
return #KEYS
`;

/**
 * TOUCH key — now, member, window, max.
 * Adds the member to a sorted set of last-touched times, dropping members
 * older than the window and the oldest beyond max. Returns size, added (0/1).
 */
export const TOUCH = `
local key, now, member, window, max = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window))
local added = redis.call('ZSCORE', key, member) == false and 1 or 0
redis.call('ZADD', key, string.format('%.0f', now), member)
local size = redis.call('ZCARD', key)
if size > max then
  redis.call('ZREMRANGEBYRANK', key, 0, size - max - 1)
  size = max
end
redis.call('PEXPIRE', key, window)
return { size, added }
`;

/**
 * MEMBERS key — now, member, ask (1: is member one of them), window. Reads
 * what TOUCH keeps, changing nothing: members touched within the window
 * (TOUCH forgets those at now - window and older), and whether `member` is
 * one.
 */
export const MEMBERS = `
local key, now, member, ask, window = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', tonumber(ARGV[4])
local floor = '(' .. string.format('%.0f', now - window)
local size = redis.call('ZCOUNT', key, floor, '+inf')
local has = 0
if ask then
  local at = redis.call('ZSCORE', key, member)
  if at and tonumber(at) > now - window then has = 1 end
end
return { size, has }
`;
