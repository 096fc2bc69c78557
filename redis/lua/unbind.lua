-- unbind undoes one bind of the idempotency key KEYS[1] whose reserve was refused. A
-- successful (or unsure) reserve never unbinds, so the binding is deleted only when
-- every request that used the key was refused. It also ends the key's in-flight mark
-- KEYS[2] (flight.lua), so that a retry with the key, on any node, runs at once.
if redis.call('HINCRBY', KEYS[1], 'n', -1) <= 0 then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
return 1
