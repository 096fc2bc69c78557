-- outbox_lag repairs the count of entries read of the consumer group ARGV[1] on the
-- outbox stream KEYS[1]. Redis restarted from its AOF restores that count as of the
-- file's last rewrite, so the lag it reports (entries added less entries read) stays
-- too high by what the group read since, for good: later reads add to the wrong count.
-- When the lag is above the entries beyond the group's last delivered one (counted up
-- to ARGV[2] of them), the count is set so that the lag is those entries. It returns
-- the lag set, or -1 when it is right (or Redis keeps no such count).
local function field(reply, name)
  for i = 1, #reply, 2 do
    if reply[i] == name then return reply[i + 1] end
  end
end
local last, lag
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  if field(g, 'name') == ARGV[1] then
    last, lag = field(g, 'last-delivered-id'), field(g, 'lag')
  end
end
if not last or type(lag) ~= 'number' or lag <= 0 then return -1 end
local after = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', tonumber(ARGV[2]))
if #after >= lag then return -1 end
local added = field(redis.call('XINFO', 'STREAM', KEYS[1]), 'entries-added')
if type(added) ~= 'number' then return -1 end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', added - #after)
return #after
