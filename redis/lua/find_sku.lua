-- find_sku returns the exact state of the SKU ARGV[4] (KEYS[1] is its hash), after
-- expiring its due holds.
local s = load_sku(ARGV[4])
if not s then return {'sku_not_found'} end
expire_due(s, clock(s.last))
return sku_reply('ok', s)
