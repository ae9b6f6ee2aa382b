-- Sum of the payload sizes ARGV[4..] (the messages' JSON).
local function payload_bytes()
  local b = 0
  for i = 4, #ARGV do b = b + string.len(ARGV[i]) end
  return b
end
