local function push(key, first, ts, from)
  local items = {}
  local seq = first
  for i = from, #ARGV do
    items[#items + 1] = tostring(seq) .. '\n' .. ts .. '\n' .. ARGV[i]
    seq = seq + 1
    if #items == 500 then
      redis.call('RPUSH', key, unpack(items))
      items = {}
    end
  end
  if #items > 0 then redis.call('RPUSH', key, unpack(items)) end
end
