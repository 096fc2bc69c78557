-- room_join gives the customer ARGV[5] a place in the room of the SKU ARGV[4], or
-- answers the place it has ('exists'). 'draw_needed': the caller draws, then retries.
local sku, cust = ARGV[4], ARGV[5]
local s = load_sku(sku)
local room = s and load_room(sku)
if not room or not room.on then return {'waiting_room_not_found'} end
local p = load_place(sku, cust)
if p then return place_reply('exists', room, s, p) end
local now = clock(nil)
if s.opens ~= ZERO and t_less(now, t_add(s.opens, -room.pre)) then
  return {'sale_not_open', t_add(s.opens, -room.pre)}
end
-- Closed is the SKU's state now (nothing available, nothing held), not the room's
-- sold_out, which the next advance brings up to date.
if s.held == 0 and s.sold >= s.stock then return {'sold_out'} end
if room.sold_out then
  -- Units came back since the last advance closed the room: it reopens now, as the
  -- next advance would, so that the place is not shown sold out.
  room.sold_out = false
  redis.call('HSET', rk(sku, 'room'), 'sold_out', '0')
  rlog(sku, RR_REOPENED, now)
end
p = {cust = cust, ticket = 0, joined = now, adm = '', till = '', state = 'w'}
if room.drawing then return {'draw_needed'} end -- the pre-queue is frozen: help finish the draw
if not room.drawn and s.opens ~= ZERO and t_less(now, s.opens) then
  redis.call('RPUSH', rk(sku, 'rpre'), cust)
else
  if draw_due(room, s, now) then return {'draw_needed'} end
  room.tail = redis.call('HINCRBY', rk(sku, 'room'), 'tail', 1)
  redis.call('RPUSH', rk(sku, 'rline'), cust)
  p.ticket = room.tail
end
save_place(sku, p)
redis.call('HINCRBY', rk(sku, 'room'), 'joined', 1)
rlog(sku, RR_JOINED, now, 'cust', cust, 'ticket', num(p.ticket))
return place_reply('joined', room, s, p)
