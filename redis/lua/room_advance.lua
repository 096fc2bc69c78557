-- room_advance applies what is due in the room of the SKU ARGV[4]: the SKU's due
-- expiries, lapsed admissions, closing when sold out and reopening, and admissions at
-- the room's pace within the units available. 'draw_needed': the caller draws first.
-- The pace is a bucket of up to one second's admissions refilled by the time since the
-- last advance, whichever node calls: nodes advancing at once never admit faster.
local sku = ARGV[4]
local s = load_sku(sku)
local room = s and load_room(sku)
if not room or not room.on then return {'waiting_room_not_found'} end
local now = clock(s.last)
expire_due(s, now)
if draw_due(room, s, now) then return {'draw_needed'} end
local adm = rk(sku, 'radm')
redis.call('ZREMRANGEBYSCORE', adm, '-inf', t_us(now))
local outstanding = redis.call('ZCARD', adm)
local available = s.stock - s.held - s.sold
local soldout = available == 0 and s.held == 0
if soldout ~= room.sold_out then rlog(sku, soldout and RR_CLOSED or RR_REOPENED, now) end
local rate, tokens = room.rate, room.tokens
if room.last == '' or t_less(now, room.last) then
  tokens = rate
else
  local el = (t_sec(now) - t_sec(room.last)) + (t_sub(now) - t_sub(room.last)) / 1e9
  tokens = math.min(rate, tokens + el * rate)
end
local head = room.head
if opened(s, now) and not soldout then
  local n = math.min(math.floor(tokens), available - outstanding, room.tail - head)
  if n > 0 then
    local window = room.window
    if window <= 0 then window = s.hold end
    local till = t_add(now, window)
    local cs = redis.call('LRANGE', rk(sku, 'rline'), head, head + n - 1)
    for _, c in ipairs(cs) do
      local p = load_place(sku, c)
      p.state, p.adm, p.till = 'a', now, till
      save_place(sku, p)
      redis.call('ZADD', adm, t_us(till), c)
      rlog(sku, RR_ADMITTED, now, 'cust', c, 'ticket', num(p.ticket), 'until', till)
    end
    head = head + n
    tokens = tokens - n
  end
end
redis.call('HSET', rk(sku, 'room'), 'tokens', string.format('%.17g', tokens), 'last', now, 'head', num(head),
  'sold_out', soldout and '1' or '0')
return {'ok'}
