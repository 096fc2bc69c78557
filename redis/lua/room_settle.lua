-- room_settle ends the claim of the customer ARGV[5] in the room of the SKU ARGV[4]:
-- ARGV[6] '1' when the reservation was made (the admission is spent), '0' otherwise.
local sku, cust = ARGV[4], ARGV[5]
local p = load_place(sku, cust)
if not p or p.state ~= 'c' then return {'ok'} end
if ARGV[6] == '1' then
  p.state = 'u'
  redis.call('ZREM', rk(sku, 'radm'), cust)
  redis.call('HINCRBY', rk(sku, 'room'), 'used', 1)
  rlog(sku, RR_USED, clock(nil), 'cust', cust)
else
  p.state = 'a'
  redis.call('ZADD', rk(sku, 'radm'), t_us(p.till), cust)
end
save_place(sku, p)
return {'ok'}
