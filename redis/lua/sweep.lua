-- sweep expires the due holds of up to ARGV[4] SKUs of the shard (KEYS[1] is its due
-- set), then deletes up to ARGV[4] reservations final since before ARGV[5] (a time),
-- with their idempotency records. It returns both counts; a count of ARGV[4] means
-- that more may be left. Several nodes may sweep at once: each expiry is re-checked.
local limit = tonumber(ARGV[4])
local now = clock(nil)
local skus = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', t_us(now), 'LIMIT', 0, limit)
for _, id in ipairs(skus) do
  local s = load_sku(id)
  if s then
    expire_due(s, clock(s.last))
    refresh_due(id) -- also drops an entry left stale
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
local old = redis.call('ZRANGEBYSCORE', k('final'), '-inf', t_us(ARGV[5]), 'LIMIT', 0, limit)
for _, id in ipairs(old) do
  local v = redis.call('HMGET', k('res:' .. id), 'sku', 'cust', 'idem')
  if v[1] and v[3] and v[3] ~= '' then redis.call('HDEL', k('idem:' .. v[1]), v[2] .. '\0' .. v[3]) end
  redis.call('DEL', k('res:' .. id))
  redis.call('ZREM', k('final'), id)
  redis.call('ZREM', k('ids'), id)
end
return {num(#skus), num(#old)}
