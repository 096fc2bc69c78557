-- bind binds the customer's idempotency key KEYS[1] to the SKU ARGV[1] and quantity
-- ARGV[2] for ARGV[3] ms, counting one more request that uses it. A key bound to
-- another SKU or quantity is refused: the reply is that binding. See unbind.
local v = redis.call('HMGET', KEYS[1], 'sku', 'qty')
if v[1] and (v[1] ~= ARGV[1] or v[2] ~= ARGV[2]) then return {v[1], v[2]} end
redis.call('HSET', KEYS[1], 'sku', ARGV[1], 'qty', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {}
