-- lib.lua is prepended to every inventory script (not bind/unbind). Every script is
-- called with ARGV[1] = the shard's key prefix "{<ns>:<shard>}", ARGV[2] = the shard
-- number and ARGV[3] = the caller's clock ("" = read Redis TIME), and touches only keys
-- that start with that prefix: one hash slot, so one script is atomic on a Cluster too.
--
-- Times are unix nanoseconds as 19-digit, zero-padded decimal strings: exact (a Lua
-- number is a double, which cannot hold them) and ordered like numbers. Sorted-set
-- scores hold their first 16 digits, whole microseconds, which a double holds exactly.
local tag = ARGV[1]
local shard = tonumber(ARGV[2])

local function k(name) return tag .. ':' .. name end

-- num formats an integer-valued number without exponent.
local function num(x) return string.format('%.0f', x) end

local function t_sec(t) return tonumber(string.sub(t, 1, 10)) end
local function t_sub(t) return tonumber(string.sub(t, 11)) end
-- t_less reports a < b.
local function t_less(a, b)
  local as, bs = t_sec(a), t_sec(b)
  if as ~= bs then return as < bs end
  return t_sub(a) < t_sub(b)
end
local function t_add(t, secs) return string.format('%010.0f', t_sec(t) + secs) .. string.sub(t, 11) end
local function t_us(t) return tonumber(string.sub(t, 1, 16)) end

-- clock returns the time of this change: the caller's clock (or Redis TIME), but never
-- before last, the time of the SKU's last change, so that a SKU's times never go back
-- whichever node's clock is behind.
local function clock(last)
  local now = ARGV[3]
  if now == '' then
    local tm = redis.call('TIME')
    now = string.format('%010.0f%06.0f000', tonumber(tm[1]), tonumber(tm[2]))
  end
  if last and last ~= '' and t_less(now, last) then return last end
  return now
end

local function load_sku(id)
  local v = redis.call('HMGET', k('sku:' .. id), 'stock', 'limit', 'hold', 'opens', 'held', 'sold', 'last')
  if not v[1] then return nil end
  return {id = id, stock = tonumber(v[1]), limit = tonumber(v[2]), hold = tonumber(v[3]), opens = v[4],
    held = tonumber(v[5]), sold = tonumber(v[6]), last = v[7]}
end

local function sku_reply(code, s)
  return {code, num(s.stock), num(s.held), num(s.sold), num(s.limit), num(s.hold), s.opens}
end

local function load_res(id)
  local v = redis.call('HMGET', k('res:' .. id), 'sku', 'cust', 'qty', 'status', 'created', 'expires',
    'confirmed', 'released', 'ref', 'idem')
  if not v[1] then return nil end
  return {id = id, sku = v[1], cust = v[2], qty = tonumber(v[3]), status = v[4], created = v[5],
    expires = v[6], confirmed = v[7] or '', released = v[8] or '', ref = v[9] or '', idem = v[10] or ''}
end

local function res_reply(code, r)
  return {code, r.id, r.sku, r.cust, num(r.qty), r.status, r.created, r.expires, r.confirmed, r.released, r.ref}
end

local function add_owned(sku, cust, d)
  local key = k('own:' .. sku)
  if redis.call('HINCRBY', key, cust, d) <= 0 then redis.call('HDEL', key, cust) end
end

local function owned(sku, cust)
  return tonumber(redis.call('HGET', k('own:' .. sku), cust)) or 0
end

-- next_seq counts the shard's events (and, in reserve, names the reservation).
local function next_seq() return redis.call('INCR', k('seq')) end

-- emit appends one event to the shard's outbox stream. Its seq is shardSeq<<8 | shard.
local function emit(n, typ, now, sku, ...)
  redis.call('XADD', k('outbox'), '*', 'seq', num(n * 256 + shard), 'type', typ, 'time', now, 'sku', sku, ...)
end

-- emit_res appends a reservation event carrying the reservation's whole state.
local function emit_res(typ, now, r, revived)
  emit(next_seq(), typ, now, r.sku, 'id', r.id, 'cust', r.cust, 'qty', num(r.qty), 'created', r.created,
    'expires', r.expires, 'idem', r.idem, 'ref', r.ref, 'revived', revived and '1' or '0')
end

-- The event types of revguard.EventType.
local EV_PUT, EV_RESERVED, EV_CONFIRMED, EV_RELEASED, EV_EXPIRED = '1', '2', '3', '4', '5'

-- refresh_due files the SKU under its earliest hold's deadline for the sweepers.
local function refresh_due(sku)
  local first = redis.call('ZRANGE', k('holds:' .. sku), 0, 0, 'WITHSCORES')
  if first[1] then
    redis.call('ZADD', k('due'), first[2], sku)
  else
    redis.call('ZREM', k('due'), sku)
  end
end

-- finish marks the reservation id final at now, for the retention purge.
local function finish(id, now) redis.call('ZADD', k('final'), t_us(now), id) end

-- expire_due expires every hold of the SKU s whose deadline is at or before now,
-- journals each, and stores the SKU's new counts and time. It returns how many.
local function expire_due(s, now)
  local holds = k('holds:' .. s.id)
  local ids = redis.call('ZRANGEBYSCORE', holds, '-inf', t_us(now))
  local n = 0
  for _, id in ipairs(ids) do
    local r = load_res(id)
    if not r or r.status ~= 'held' then
      redis.call('ZREM', holds, id)
    elseif not t_less(now, r.expires) then
      r.status = 'expired'
      redis.call('HSET', k('res:' .. id), 'status', 'expired')
      redis.call('ZREM', holds, id)
      add_owned(s.id, r.cust, -r.qty)
      s.held = s.held - r.qty
      finish(id, now)
      emit_res(EV_EXPIRED, now, r, false)
      n = n + 1
    end
  end
  if n > 0 then
    s.last = now
    redis.call('HSET', k('sku:' .. s.id), 'held', num(s.held), 'last', now)
  end
  if #ids > 0 then refresh_due(s.id) end
  return n
end
