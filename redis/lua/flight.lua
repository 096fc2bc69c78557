-- flight marks the first reserve of an idempotency key in flight on one node: it sets
-- KEYS[1] (the mark) to ARGV[1] for ARGV[2] ms unless another node's mark is there.
-- It returns {mine, bound}: whether the mark is this call's, and whether the key has a
-- binding KEYS[2] (made by a reserve with the key that succeeded, is under way, or whose
-- outcome is unknown), in which case the caller must look for its reservation before
-- reserving. Both keys are in the customer's slot.
local mine = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
return {mine, redis.call('EXISTS', KEYS[2])}
