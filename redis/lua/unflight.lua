-- unflight ends the in-flight mark KEYS[1] of an idempotency key's first reserve, if it
-- is still the one this node set (ARGV[1]); a mark that expired and was set again by
-- another node is left alone.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
