-- room_delete turns the room of the SKU ARGV[4] off, keeping its places.
local sku = ARGV[4]
local room = load_room(sku)
if not room or not room.on then return {'waiting_room_not_found'} end
redis.call('HSET', rk(sku, 'room'), 'on', '0')
rlog(sku, RR_DELETED, clock(nil))
return {'ok'}
