-- put creates the SKU ARGV[4], or replaces its settings: stock ARGV[5], per-customer
-- limit ARGV[6], hold seconds ARGV[7], opens_at ARGV[8] (a time; all zeros: open at
-- once). KEYS[1] is its hash. Refused, changing nothing but due expiries, when the
-- stock is below the units held or sold.
local id = ARGV[4]
local stock, limit, hold, opens = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local s = load_sku(id)
local created = s == nil
local now = clock(s and s.last)
if created then
  s = {id = id, held = 0, sold = 0}
  redis.call('ZADD', k('skus'), 0, id)
else
  expire_due(s, now)
  if stock < s.held + s.sold then
    return {'stock_below_committed', num(stock), num(s.held + s.sold)}
  end
end
s.stock, s.limit, s.hold, s.opens, s.last = stock, limit, hold, opens, now
redis.call('HSET', KEYS[1], 'stock', num(stock), 'limit', num(limit), 'hold', num(hold), 'opens', opens,
  'held', num(s.held), 'sold', num(s.sold), 'last', now)
emit(next_seq(), EV_PUT, now, id, 'stock', num(stock), 'limit', num(limit), 'hold', num(hold), 'opens', opens)
return sku_reply(created and 'created' or 'ok', s)
