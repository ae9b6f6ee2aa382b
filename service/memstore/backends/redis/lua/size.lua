-- Sum of the payload sizes ARGV[from..] (the messages' JSON).
local function payload_bytes(from)
  local b = 0
  for i = from, #ARGV do b = b + string.len(ARGV[i]) end
  return b
end
