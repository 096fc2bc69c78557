-- find_reservation returns the reservation ARGV[4] (KEYS[1] is its hash) after
-- expiring the due holds of its SKU: a hold past its deadline is reported expired.
local r = load_res(ARGV[4])
if not r then return {'reservation_not_found'} end
local s = load_sku(r.sku)
if s and expire_due(s, clock(s.last)) > 0 then r = load_res(ARGV[4]) end
return res_reply('ok', r)
