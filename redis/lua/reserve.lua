-- reserve holds ARGV[6] units of the SKU ARGV[4] (KEYS[1] is its hash) for the customer
-- ARGV[5], with the idempotency key ARGV[7] ("" for none). In one step: replay of the
-- key's reservation on this SKU, expiry of due holds, the checks, the hold, its event.
local id, cust, qty, ikey = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local s = load_sku(id)
if not s then return {'sku_not_found'} end
local ifield
if ikey ~= '' then
  ifield = cust .. '\0' .. ikey
  local rid = redis.call('HGET', k('idem:' .. id), ifield)
  if rid then
    local r = load_res(rid)
    if r then
      if r.qty ~= qty then return {'idempotency_key_reused', id, num(r.qty)} end
      r.status, r.confirmed, r.released, r.ref = 'held', '', '', ''
      return res_reply('replay', r)
    end
  end
end
local now = clock(s.last)
expire_due(s, now)
if t_less(now, s.opens) then return {'sale_not_open', s.opens} end
if s.stock - s.held - s.sold < qty then return {'sold_out'} end
local own = owned(id, cust)
if own + qty > s.limit then return {'limit_exceeded', num(s.limit), num(own)} end

-- The id: 10 Crockford base32 digits of the creation time in ms, 2 of the shard, 12 of
-- the shard's event counter. Sortable by time, unique forever, naming its shard.
local n = next_seq()
local B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
local function b32(x, width)
  local out = {}
  for i = width, 1, -1 do
    local d = x % 32
    out[i] = string.sub(B32, d + 1, d + 1)
    x = (x - d) / 32
  end
  return table.concat(out)
end
local r = {id = b32(tonumber(string.sub(now, 1, 13)), 10) .. b32(shard, 2) .. b32(n, 12), sku = id, cust = cust,
  qty = qty, status = 'held', created = now, expires = t_add(now, s.hold), confirmed = '', released = '', ref = '',
  idem = ikey}
redis.call('HSET', k('res:' .. r.id), 'sku', id, 'cust', cust, 'qty', num(qty), 'status', 'held',
  'created', now, 'expires', r.expires, 'idem', ikey)
redis.call('ZADD', k('holds:' .. id), t_us(r.expires), r.id)
redis.call('ZADD', k('due'), 'LT', t_us(r.expires), id)
redis.call('ZADD', k('ids'), 0, r.id)
if ifield then redis.call('HSET', k('idem:' .. id), ifield, r.id) end
add_owned(id, cust, qty)
redis.call('HSET', KEYS[1], 'held', num(s.held + qty), 'last', now)
emit(n, EV_RESERVED, now, id, 'id', r.id, 'cust', cust, 'qty', num(qty), 'created', now, 'expires', r.expires,
  'idem', ikey, 'ref', '', 'revived', '0')
return res_reply('ok', r)
