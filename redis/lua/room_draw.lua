-- room_draw records the draw of the room of the SKU ARGV[4]: seed ARGV[5] (hex), the
-- pre-queue's size ARGV[6], then the order drawn (ARGV[7]...), which the caller
-- computed from the pre-queue it read. 'retry' when the pre-queue changed since.
local sku, n = ARGV[4], tonumber(ARGV[6])
local s = load_sku(sku)
local room = s and load_room(sku)
if not room or not room.on then return {'waiting_room_not_found'} end
if room.drawn then return {'ok'} end
local now = clock(nil)
if not opened(s, now) then return {'not_due'} end
local pre = rk(sku, 'rpre')
if redis.call('LLEN', pre) ~= n then return {'retry'} end
rlog(sku, RR_DRAWN, now, 'seed', ARGV[5], 'ticket', num(n))
for i = 1, n do
  local c = ARGV[6 + i]
  local p = load_place(sku, c) or {cust = c, joined = now, adm = '', till = '', state = 'w'}
  p.ticket = room.tail + i
  save_place(sku, p)
  redis.call('RPUSH', rk(sku, 'rline'), c)
  rlog(sku, RR_PLACED, now, 'cust', c, 'ticket', num(p.ticket))
end
redis.call('DEL', pre)
redis.call('HSET', rk(sku, 'room'), 'drawn', '1', 'seed', ARGV[5], 'drawn_at', now, 'draw_size', num(n),
  'tail', num(room.tail + n))
return {'ok'}
