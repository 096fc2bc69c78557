-- room_find returns the state of the room of the SKU ARGV[4], its current admissions
-- counted at the caller's time.
local sku = ARGV[4]
local room = load_room(sku)
if not room or not room.on then return {'waiting_room_not_found'} end
local now = clock(nil)
return {'ok', num(room.pre), num(room.rate), num(room.window), room.drawn and '1' or '0', room.seed, room.drawn_at,
  num(room.draw_size), num(room.head), num(room.tail), room.sold_out and '1' or '0', num(room.used),
  num(room.joined), num(redis.call('LLEN', rk(sku, 'rpre'))),
  num(redis.call('ZCOUNT', rk(sku, 'radm'), '(' .. num(t_us(now)), '+inf'))}
