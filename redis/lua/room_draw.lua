-- room_draw makes the draw of the room of the SKU ARGV[4] in steps, so that no script
-- holds the server long however large the pre-queue; any node may take the next step,
-- and a node that died mid-draw leaves it to the next:
--
--   ARGV[5] 'begin', ARGV[6] seed (hex), ARGV[7] the pre-queue's size as the caller read
--     it: records the seed and freezes the pre-queue ('retry' if it has changed since).
--     The answer is {'drawing', seed, size, placed}, with the seed of whichever node
--     began: every node computes the same order from it and the frozen pre-queue.
--   ARGV[5] 'place', ARGV[6] the number already placed, ARGV[7]... the next customers of
--     the order: places them ('progress', placed) when another node got there first).
--   ARGV[5] 'end': the draw is complete once every customer is placed.
local sku, step = ARGV[4], ARGV[5]
local s = load_sku(sku)
local room = s and load_room(sku)
if not room or not room.on then return {'waiting_room_not_found'} end
if room.drawn then return {'ok'} end
local rkey = rk(sku, 'room')
local now = clock(nil)
if step == 'begin' then
  if not room.drawing then
    if not opened(s, now) then return {'not_due'} end
    local n = tonumber(ARGV[7])
    if redis.call('LLEN', rk(sku, 'rpre')) ~= n then return {'retry'} end
    redis.call('HSET', rkey, 'drawing', '1', 'seed', ARGV[6], 'drawn_at', now, 'draw_size', num(n), 'placed', '0')
    rlog(sku, RR_DRAWN, now, 'seed', ARGV[6], 'ticket', num(n))
    room.seed, room.draw_size, room.placed = ARGV[6], n, 0
  end
  return {'drawing', room.seed, num(room.draw_size), num(room.placed)}
end
if not room.drawing then return {'retry'} end
if step == 'place' then
  local from = tonumber(ARGV[6])
  if from ~= room.placed then return {'progress', num(room.placed)} end
  local line = rk(sku, 'rline')
  local n = #ARGV - 6
  for i = 1, n do
    local c = ARGV[6 + i]
    local p = load_place(sku, c) or {cust = c, joined = now, adm = '', till = '', state = 'w'}
    p.ticket = from + i
    save_place(sku, p)
    redis.call('RPUSH', line, c)
    rlog(sku, RR_PLACED, room.drawn_at, 'cust', c, 'ticket', num(p.ticket))
  end
  redis.call('HSET', rkey, 'placed', num(from + n))
  return {'progress', num(from + n)}
end
-- 'end'
if room.placed ~= room.draw_size then return {'progress', num(room.placed)} end
redis.call('DEL', rk(sku, 'rpre'))
redis.call('HSET', rkey, 'drawn', '1', 'drawing', '0', 'tail', num(room.tail + room.draw_size))
return {'ok'}
