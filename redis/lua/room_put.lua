-- room_put turns the room of the SKU ARGV[4] on with pre-queue seconds ARGV[5], pace
-- ARGV[6] and admission seconds ARGV[7] (0: the SKU's hold time).
local sku = ARGV[4]
if not load_sku(sku) then return {'sku_not_found'} end
local room = load_room(sku)
local now = clock(nil)
redis.call('HSET', rk(sku, 'room'), 'on', '1', 'pre', ARGV[5], 'rate', ARGV[6], 'window', ARGV[7])
if room and room.tokens > tonumber(ARGV[6]) then
  redis.call('HSET', rk(sku, 'room'), 'tokens', ARGV[6])
end
rlog(sku, RR_PUT, now, 'pre', ARGV[5], 'rate', ARGV[6], 'window', ARGV[7])
if room then return {'ok'} end
return {'created'}
