-- ratelimit.lua: take one token from a token bucket shared by every node (RateLimiter).
--
-- The bucket holds at most n tokens and refills n per period. Its state is kept as a
-- debt, GCRA's theoretical arrival time minus the last update, scaled by n so that all
-- arithmetic is on integers below 2^53 (exact in Lua's doubles):
--
--   debt = (n - tokens) * per     (µs × n; 0 = full, n * per = empty)
--
-- Taking a token adds per; each elapsed µs pays back n. Redis runs one script at a time,
-- so concurrent callers on any number of nodes take tokens one after another and never
-- more than the rate allows.
--
-- KEYS[1]  the bucket, a hash: t = time of the last change (µs), d = debt
-- ARGV[1]  n, the bucket's size and its refill per period (integer >= 1)
-- ARGV[2]  per, the period in µs (integer >= 1, n * per < 2^53)
-- ARGV[3]  the caller's clock in µs, or '' to use Redis's TIME
--
-- Returns {1, 0} when a token was taken, or {0, w} when the bucket is empty and nothing
-- changed: the next token is there in w / n µs.
local n = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end

local b = redis.call('HMGET', KEYS[1], 't', 'd')
local last, debt = tonumber(b[1]), tonumber(b[2])
if last == nil or debt == nil then
  last, debt = now, 0 -- a new bucket, or one that expired full
end
-- A bucket's time never goes backwards, whichever clock is behind.
if now < last then
  now = last
end
debt = math.max(0, debt - (now - last) * n)

local size = n * per
if debt + per > size then
  return {0, debt + per - size}
end
debt = debt + per
redis.call('HSET', KEYS[1], 't', string.format('%.0f', now), 'd', string.format('%.0f', debt))
-- Once the debt is paid back the bucket is full, the same as no bucket: let it expire
-- then (plus a second of slack for callers' clocks).
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil(debt / n / 1000) + 1000))
return {1, 0}
