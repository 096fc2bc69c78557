-- confirm turns the hold ARGV[4] (KEYS[1] is its hash) of the customer ARGV[5] into a
-- sale, recording the order ref ARGV[6]; with ARGV[7] = "1" an expired hold is revived
-- by taking its units again.
local r = load_res(ARGV[4])
if not r or r.cust ~= ARGV[5] then return {'reservation_not_found'} end
local s = load_sku(r.sku)
if not s then return {'reservation_not_found'} end
local now = clock(s.last)
if expire_due(s, now) > 0 then r = load_res(ARGV[4]) end
if r.status == 'released' then return {'hold_released'} end
if r.status == 'confirmed' then return res_reply('ok', r) end
local revived = r.status == 'expired'
if revived then
  if ARGV[7] ~= '1' then return {'hold_expired', r.expires} end
  if s.stock - s.held - s.sold < r.qty then return {'sold_out', 'revive'} end
  local own = owned(r.sku, r.cust)
  if own + r.qty > s.limit then return {'limit_exceeded', num(s.limit), num(own)} end
  add_owned(r.sku, r.cust, r.qty)
else
  s.held = s.held - r.qty
  redis.call('ZREM', k('holds:' .. r.sku), r.id)
  refresh_due(r.sku)
end
r.status, r.confirmed = 'confirmed', now
if ARGV[6] ~= '' then r.ref = ARGV[6] end
redis.call('HSET', KEYS[1], 'status', 'confirmed', 'confirmed', now, 'ref', r.ref)
redis.call('HSET', k('sku:' .. r.sku), 'held', num(s.held), 'sold', num(s.sold + r.qty), 'last', now)
finish(r.id, now)
emit_res(EV_CONFIRMED, now, r, revived)
return res_reply('ok', r)
