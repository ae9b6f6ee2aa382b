-- Sum of the payload sizes ARGV[from..] (the messages' JSON).
local function payload_bytes(from)
  local b = 0
  for i = from, #ARGV do b = b + string.len(ARGV[i]) end
  return b
end

-- Their logical sizes (logical.lua)
local function payload_lbytes(from)
  local b = 0
  for i = from, #ARGV do b = b + payload_logical(ARGV[i]) end
  return b
end
