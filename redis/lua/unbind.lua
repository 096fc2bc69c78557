-- unbind undoes one bind of the idempotency key KEYS[1] whose reserve was refused. A
-- successful (or unsure) reserve never unbinds, so the binding is deleted only when
-- every request that used the key was refused.
if redis.call('HINCRBY', KEYS[1], 'n', -1) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
