-- release gives the units of the hold ARGV[4] (KEYS[1] is its hash) back. ARGV[5] must
-- own it; "" is the admin, who may release any.
local r = load_res(ARGV[4])
if not r or (ARGV[5] ~= '' and r.cust ~= ARGV[5]) then return {'reservation_not_found'} end
local s = load_sku(r.sku)
if not s then return {'reservation_not_found'} end
local now = clock(s.last)
if expire_due(s, now) > 0 then r = load_res(ARGV[4]) end
if r.status == 'confirmed' then return {'already_confirmed'} end
if r.status == 'expired' then return {'hold_expired', r.expires} end
if r.status == 'released' then return res_reply('ok', r) end
r.status, r.released = 'released', now
redis.call('HSET', KEYS[1], 'status', 'released', 'released', now)
redis.call('ZREM', k('holds:' .. r.sku), r.id)
refresh_due(r.sku)
add_owned(r.sku, r.cust, -r.qty)
redis.call('HSET', k('sku:' .. r.sku), 'held', num(s.held - r.qty), 'last', now)
finish(r.id, now)
emit_res(EV_RELEASED, now, r, false)
return res_reply('ok', r)
