-- room_claim takes the current admission of the customer ARGV[5] to the room of the
-- SKU ARGV[4] for one reservation ('none': the SKU has no room, or it is off).
local sku, cust = ARGV[4], ARGV[5]
local room = load_room(sku)
if not room or not room.on then return {'none'} end
local p = load_place(sku, cust)
if not p then return {'admission_required', 'none'} end
if p.state == 'w' then return {'admission_required', 'waiting'} end
if p.state == 'u' then return {'admission_required', 'used'} end
local now = clock(nil)
if p.state == 'c' and t_less(now, t_add(p.till, CLAIM_GRACE)) then return {'admission_required', 'claimed'} end
if not t_less(now, p.till) then return {'admission_required', 'lapsed', p.till} end
p.state = 'c'
save_place(sku, p)
-- The claimed admission keeps its unit until it is settled, or until the grace ends.
redis.call('ZADD', rk(sku, 'radm'), t_us(t_add(p.till, CLAIM_GRACE)), cust)
return {'ok'}
