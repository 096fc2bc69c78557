-- room_lib.lua follows lib.lua in every waiting room script. A SKU's room lives in the
-- SKU's shard, so that a script reads the SKU's counts and changes its room atomically:
--
--	T:room:<sku>    hash    on, pre, rate, window, drawn, seed, drawn_at, draw_size,
--	                        head (admitted so far), tail (last ticket), tokens, last,
--	                        sold_out, used, joined, drawing and placed (a draw under way)
--	T:rplace:<sku>  hash    customer → "ticket|joined|admitted_at|until|state"
--	                        (state w: in line or pre-queue, a: admitted, c: claimed, u: used)
--	T:rpre:<sku>    list    the pre-queue, in join order (until the draw)
--	T:rline:<sku>   list    the line: ticket i at index i-1
--	T:radm:<sku>    zset    customer → µs of the end of its admission (current ones)
--	T:rlog:<sku>    stream  the room's audit log (revguard.RoomRecord)
local ZERO = '0000000000000000000'

local function rk(sku, name) return k(name .. ':' .. sku) end

local function load_room(sku)
  local v = redis.call('HMGET', rk(sku, 'room'), 'on', 'pre', 'rate', 'window', 'drawn', 'seed', 'drawn_at',
    'draw_size', 'head', 'tail', 'tokens', 'last', 'sold_out', 'used', 'joined', 'drawing', 'placed')
  if not v[2] then return nil end
  return {on = v[1] == '1', pre = tonumber(v[2]), rate = tonumber(v[3]), window = tonumber(v[4]),
    drawn = v[5] == '1', seed = v[6] or '', drawn_at = v[7] or '', draw_size = tonumber(v[8]) or 0,
    head = tonumber(v[9]) or 0, tail = tonumber(v[10]) or 0, tokens = tonumber(v[11]) or 0, last = v[12] or '',
    sold_out = v[13] == '1', used = tonumber(v[14]) or 0, joined = tonumber(v[15]) or 0,
    drawing = v[16] == '1', placed = tonumber(v[17]) or 0}
end

local function load_place(sku, cust)
  local v = redis.call('HGET', rk(sku, 'rplace'), cust)
  if not v then return nil end
  local t, j, a, u, st = string.match(v, '^(%d+)|(%d*)|(%d*)|(%d*)|(%a)$')
  return {cust = cust, ticket = tonumber(t), joined = j, adm = a, till = u, state = st}
end

local function save_place(sku, p)
  redis.call('HSET', rk(sku, 'rplace'), p.cust, num(p.ticket) .. '|' .. p.joined .. '|' .. p.adm .. '|' .. p.till .. '|' .. p.state)
end

-- The record types of revguard.RoomRecordType.
-- CLAIM_GRACE is how long past its window a claimed admission (a reservation under
-- way) stays claimed: a node that died between claim and settle leaves a claim that
-- lapses then, instead of locking the customer out for good.
local CLAIM_GRACE = 60

local RR_PUT, RR_DELETED, RR_JOINED, RR_DRAWN, RR_PLACED, RR_ADMITTED, RR_USED, RR_CLOSED, RR_REOPENED =
  '1', '2', '3', '4', '5', '6', '7', '8', '9'

local function rlog(sku, typ, now, ...)
  redis.call('XADD', rk(sku, 'rlog'), '*', 'type', typ, 'time', now, ...)
end

-- opened reports whether the SKU's sale is open at now.
local function opened(s, now) return s.opens == ZERO or not t_less(now, s.opens) end

-- draw_due reports whether the draw must be made before anyone is placed in line: the
-- sale is open, no draw yet, and a pre-queue (or an opens_at) to draw.
local function draw_due(room, s, now)
  return not room.drawn and opened(s, now) and (s.opens ~= ZERO or redis.call('LLEN', rk(s.id, 'rpre')) > 0)
end

local function place_reply(code, room, s, p)
  return {code, num(p.ticket), p.joined, p.adm, p.till, p.state, num(room.head), num(room.rate),
    room.sold_out and '1' or '0', s.opens}
end
