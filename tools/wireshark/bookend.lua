-- Wireshark dissector for the bookend session protocol, version 1
-- (docs/protocol.md). Decodes every frame type, the flags, the options,
-- reason codes and user data (as text when it is printable), checks a
-- sealed frame's header check and CRC-32C trailer (§2.5) and a CONNECT's
-- 5-byte INTEGRITY check, follows frames across TCP segments, and flags
-- frames over the limits of §2.4 as malformed instead of waiting for them.
--
-- Registered on TCP port 7050 (the tools' default; preference
-- `bookend.port`) and as a heuristic on every TCP connection whose first
-- bytes are a CONNECT (type 0x01, magic "BKND"), so that captures on other
-- ports decode too.
--
--   tshark -X lua_script:tools/wireshark/bookend.lua -r capture.pcap -Y bookend
--
-- Written for Lua 5.2 (Wireshark 3.x-4.2) and later: bit operations go
-- through bit32 or LuaBitOp, never 5.3's operators.

local bit = bit32 or bit

local bookend = Proto("bookend", "bookend session protocol")

-- §3: frame types.
local frame_types = {
    [0x01] = "CONNECT", [0x02] = "ACCEPT", [0x03] = "REJECT", [0x04] = "DATA",
    [0x05] = "DISCONNECT", [0x06] = "ABORT", [0x07] = "PING",
}

-- §8: reason codes.
local reasons = {
    [0x0000] = "UNSPECIFIED", [0x0001] = "REJECTED", [0x0002] = "BUSY",
    [0x0003] = "DECISION_TIMEOUT", [0x0004] = "VERSION_UNSUPPORTED",
    [0x0005] = "OPTION_UNSUPPORTED", [0x0006] = "DATA_TOO_LARGE",
    [0x0007] = "SHUTTING_DOWN", [0x0008] = "INTEGRITY_REQUIRED",
    [0x0100] = "PROTOCOL_ERROR", [0x0101] = "UNEXPECTED_FRAME",
    [0x0102] = "FRAME_TOO_LARGE", [0x0103] = "MESSAGE_TOO_LARGE",
    [0x0104] = "UNKNOWN_FRAME", [0x0105] = "CONNECT_TIMEOUT",
    [0x0106] = "HANDSHAKE_TIMEOUT", [0x0107] = "IDLE_TIMEOUT",
    [0x0108] = "LINGER_TIMEOUT", [0x0109] = "UNREAD_DATA",
    [0x010A] = "APPLICATION_ABORT", [0x010B] = "UNEXPECTED_EOF",
    [0x010C] = "INTEGRITY_FAILURE",
}

-- §4.1: option kinds.
local option_kinds = {
    [0x0001] = "MAX_FRAME_SIZE", [0x0002] = "MAX_MESSAGE_SIZE",
    [0x0003] = "MAX_CONNECT_DATA", [0x0004] = "MAX_DISCONNECT_DATA",
    [0x0005] = "MODE", [0x0006] = "KEEPALIVE_MS", [0x0007] = "INTEGRITY",
}

-- §2.4 and §6.1: the largest frame any peer may send. A DATA frame carries
-- at most MAX_FRAME_SIZE (16 MiB); CONNECT, ACCEPT, REJECT, DISCONNECT and
-- ABORT at most 1 MiB of user data plus their fixed part and 1 KiB of
-- options. Anything longer is malformed, and is not reassembled.
local MAX_FRAME = 16 * 1024 * 1024 + 4
local MAX_CONTROL = 1024 * 1024 + 8 + 1024 + 4

local f = bookend.fields
f.type = ProtoField.uint8("bookend.type", "Type", base.HEX, frame_types)
f.flags = ProtoField.uint8("bookend.flags", "Flags", base.HEX)
f.must_understand = ProtoField.bool("bookend.flags.must_understand", "MUST_UNDERSTAND", 8, nil, 0x80)
f.crc32c = ProtoField.bool("bookend.flags.crc32c", "CRC32C (sealed)", 8, nil, 0x40)
f.bit0 = ProtoField.bool("bookend.flags.bit0", "HAS_DATA / END_OF_MESSAGE", 8, nil, 0x01)
f.length = ProtoField.uint32("bookend.length", "Length", base.DEC)
f.header_check = ProtoField.uint32("bookend.header_check", "Header check", base.HEX)
f.header_check_ok = ProtoField.bool("bookend.header_check.ok", "Header check correct")
f.magic = ProtoField.string("bookend.magic", "Magic")
f.max_version = ProtoField.uint8("bookend.max_version", "Max version")
f.min_version = ProtoField.uint8("bookend.min_version", "Min version")
f.version = ProtoField.uint8("bookend.version", "Version")
f.options_length = ProtoField.uint16("bookend.options_length", "Options length")
f.option = ProtoField.bytes("bookend.option", "Option")
f.option_kind = ProtoField.uint16("bookend.option.kind", "Kind", base.HEX, option_kinds, 0x7FFF)
f.option_critical = ProtoField.bool("bookend.option.critical", "CRITICAL", 16, nil, 0x8000)
f.option_length = ProtoField.uint16("bookend.option.length", "Length")
f.option_value = ProtoField.uint32("bookend.option.value", "Value")
f.connect_check = ProtoField.uint32("bookend.connect_check", "CONNECT check", base.HEX)
f.connect_check_ok = ProtoField.bool("bookend.connect_check.ok", "CONNECT check correct")
f.reason = ProtoField.uint16("bookend.reason", "Reason", base.HEX, reasons)
f.data = ProtoField.bytes("bookend.data", "User data")
f.data_text = ProtoField.string("bookend.data.text", "User data (text)")
f.payload = ProtoField.bytes("bookend.payload", "Payload")
f.trailer = ProtoField.uint32("bookend.trailer", "Trailer (CRC-32C)", base.HEX)
f.trailer_ok = ProtoField.bool("bookend.trailer.ok", "Trailer correct")

local e_malformed = ProtoExpert.new("bookend.malformed", "Malformed bookend frame",
    expert.group.MALFORMED, expert.severity.ERROR)
local e_crc = ProtoExpert.new("bookend.crc_bad", "CRC-32C mismatch",
    expert.group.CHECKSUM, expert.severity.ERROR)
bookend.experts = { e_malformed, e_crc }

bookend.prefs.port = Pref.uint("TCP port", 7050, "TCP port decoded as bookend (0: heuristic only)")

-- CRC-32C (Castagnoli, reflected, init and final XOR 0xFFFFFFFF), §2.5.
local crc_table = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if bit.band(c, 1) == 1 then
            c = bit.bxor(bit.rshift(c, 1), 0x82F63B78)
        else
            c = bit.rshift(c, 1)
        end
    end
    crc_table[i] = c
end

-- CRC-32C of the bytes of `bytes` (a ByteArray) from `from` (0-based) for
-- `len` bytes, with the bytes from `zero_at` for 4 bytes taken as zero.
local function crc32c(bytes, from, len, zero_at)
    local c = 0xFFFFFFFF
    for i = from, from + len - 1 do
        local b = bytes:get_index(i)
        if zero_at and i >= zero_at and i < zero_at + 4 then
            b = 0
        end
        c = bit.bxor(crc_table[bit.band(bit.bxor(c, b), 0xFF)], bit.rshift(c, 8))
    end
    return bit.bxor(c, 0xFFFFFFFF) % 4294967296
end

local function header_len(flags)
    if bit.band(flags, 0x40) ~= 0 then return 10 end
    return 6
end

-- The user data: its bytes, and as text when printable.
local function add_data(tree, tvb, offset, len)
    if len <= 0 then
        tree:add(f.data, tvb(offset, 0))
        return
    end
    local range = tvb(offset, len)
    tree:add(f.data, range)
    local s = range:string()
    if not s:find("[^%g ]") then
        tree:add(f.data_text, range)
    end
end

-- §4.1: the options block; returns the 5-byte INTEGRITY check's offset.
local function add_options(tree, tvb, offset, len)
    local check_at
    local stop = offset + len
    while offset + 4 <= stop do
        local kind = tvb(offset, 2):uint()
        local vlen = tvb(offset + 2, 2):uint()
        if offset + 4 + vlen > stop then
            tree:add_proto_expert_info(e_malformed, "option runs past the options block")
            return check_at
        end
        local name = option_kinds[bit.band(kind, 0x7FFF)] or string.format("unknown 0x%04x", bit.band(kind, 0x7FFF))
        local t = tree:add(f.option, tvb(offset, 4 + vlen)):set_text("Option: " .. name)
        t:add(f.option_kind, tvb(offset, 2))
        t:add(f.option_critical, tvb(offset, 2))
        t:add(f.option_length, tvb(offset + 2, 2))
        if vlen == 1 or vlen == 2 or vlen == 4 then
            t:add(f.option_value, tvb(offset + 4, vlen))
        elseif bit.band(kind, 0x7FFF) == 0x0007 and vlen == 5 then
            t:add(f.option_value, tvb(offset + 4, 1))
            t:add(f.connect_check, tvb(offset + 5, 4))
            check_at = offset + 5
        end
        offset = offset + 4 + vlen
    end
    if offset ~= stop then
        tree:add_proto_expert_info(e_malformed, "options block ends inside an option")
    end
    return check_at
end

-- The length of the frame starting at `offset`, for dissect_tcp_pdus.
local function frame_len(tvb, pinfo, offset)
    local flags = tvb(offset + 1, 1):uint()
    local length = tvb(offset + 2, 4):uint()
    local ftype = tvb(offset, 1):uint()
    local limit = MAX_CONTROL
    if ftype == 0x04 or not frame_types[ftype] then limit = MAX_FRAME end
    if length > limit then
        -- Malformed: do not reassemble it; what remains is shown as is.
        return tvb:len() - offset
    end
    return header_len(flags) + length
end

local function dissect_frame(tvb, pinfo, tree)
    local ftype = tvb(0, 1):uint()
    local flags = tvb(1, 1):uint()
    local length = tvb(2, 4):uint()
    local hl = header_len(flags)
    local name = frame_types[ftype] or string.format("unknown 0x%02x", ftype)
    local sealed = hl == 10
    local t = tree:add(bookend, tvb(), "bookend " .. name)
    t:add(f.type, tvb(0, 1))
    local ft = t:add(f.flags, tvb(1, 1))
    ft:add(f.must_understand, tvb(1, 1))
    ft:add(f.crc32c, tvb(1, 1))
    ft:add(f.bit0, tvb(1, 1))
    t:add(f.length, tvb(2, 4))
    pinfo.cols.protocol = "bookend"
    local info = name
    if ftype == 0x00 then
        t:add_proto_expert_info(e_malformed, "type 0x00 is reserved (§2.1)")
    end
    local limit = (ftype == 0x04 or not frame_types[ftype]) and MAX_FRAME or MAX_CONTROL
    if length > limit or tvb:len() < hl + length then
        t:add_proto_expert_info(e_malformed, "length over the limits of §2.4")
        pinfo.cols.info:append(" " .. info .. " [malformed]")
        return
    end
    local bytes = tvb:bytes()
    local body_len = length
    if sealed then
        local hc = t:add(f.header_check, tvb(6, 4))
        local ok = crc32c(bytes, 0, 6) == tvb(6, 4):uint()
        hc:add(f.header_check_ok, ok)
        if not ok then hc:add_proto_expert_info(e_crc, "header check mismatch") end
        if length < 4 then
            t:add_proto_expert_info(e_malformed, "sealed body shorter than its trailer (§2.5)")
            return
        end
        body_len = length - 4
        local tr = t:add(f.trailer, tvb(10 + body_len, 4))
        local tok = crc32c(bytes, 0, 10 + body_len) == tvb(10 + body_len, 4):uint()
        tr:add(f.trailer_ok, tok)
        if not tok then tr:add_proto_expert_info(e_crc, "trailer mismatch") end
    end
    local b = hl
    if ftype == 0x01 or ftype == 0x02 then
        if body_len < 8 then
            t:add_proto_expert_info(e_malformed, "shorter than its fixed part")
        else
            t:add(f.magic, tvb(b, 4))
            if ftype == 0x01 then
                t:add(f.max_version, tvb(b + 4, 1))
                t:add(f.min_version, tvb(b + 5, 1))
            else
                t:add(f.version, tvb(b + 4, 1))
            end
            local olen = tvb(b + 6, 2):uint()
            t:add(f.options_length, tvb(b + 6, 2))
            if 8 + olen > body_len then
                t:add_proto_expert_info(e_malformed, "options block runs past the body")
            else
                local check_at = add_options(t, tvb, b + 8, olen)
                if check_at and ftype == 0x01 then
                    -- §2.5: over the whole CONNECT (but a trailer), these 4
                    -- bytes taken as zero.
                    local ok = crc32c(bytes, 0, hl + body_len, check_at) == tvb(check_at, 4):uint()
                    t:add(f.connect_check_ok, ok)
                    if not ok then t:add_proto_expert_info(e_crc, "CONNECT check mismatch") end
                end
                if bit.band(flags, 0x01) ~= 0 then
                    add_data(t, tvb, b + 8 + olen, body_len - 8 - olen)
                end
            end
        end
    elseif ftype == 0x03 or ftype == 0x06 then
        if body_len < 2 then
            t:add_proto_expert_info(e_malformed, "shorter than its reason (§3.3)")
        else
            t:add(f.reason, tvb(b, 2))
            local code = tvb(b, 2):uint()
            info = info .. "(" .. (reasons[code] or string.format("0x%04x", code)) .. ")"
            if bit.band(flags, 0x01) ~= 0 then
                add_data(t, tvb, b + 2, body_len - 2)
            elseif body_len > 2 then
                t:add_proto_expert_info(e_malformed, "data without HAS_DATA (§2.2)")
            end
        end
    elseif ftype == 0x04 then
        if body_len > 0 then t:add(f.payload, tvb(b, body_len)) end
        if bit.band(flags, 0x01) ~= 0 then info = info .. " [EOM]" end
        info = info .. " len=" .. body_len
    elseif ftype == 0x05 then
        if bit.band(flags, 0x01) ~= 0 then
            add_data(t, tvb, b, body_len)
        elseif body_len > 0 then
            t:add_proto_expert_info(e_malformed, "data without HAS_DATA (§2.2)")
        end
    elseif ftype == 0x07 then
        if body_len > 0 then
            t:add_proto_expert_info(e_malformed, "PING with a body (§3.7)")
        end
    end
    if sealed then info = info .. " [sealed]" end
    pinfo.cols.info:append(" " .. info)
end

function bookend.dissector(tvb, pinfo, tree)
    pinfo.cols.info:clear()
    pinfo.cols.info:set("bookend")
    dissect_tcp_pdus(tvb, tree, 6, frame_len, dissect_frame)
    return tvb:len()
end

-- The heuristic: a connection whose first bytes are a CONNECT (type 0x01,
-- magic "BKND" after a 6- or 10-byte header). Once matched, the whole
-- conversation is bookend's.
local function heuristic(tvb, pinfo, tree)
    if tvb:len() < 10 or tvb(0, 1):uint() ~= 0x01 then return false end
    local hl = header_len(tvb(1, 1):uint())
    if tvb:len() < hl + 4 or tvb(hl, 4):string() ~= "BKND" then return false end
    pinfo.conversation = bookend
    bookend.dissector(tvb, pinfo, tree)
    return true
end

bookend:register_heuristic("tcp", heuristic)

local registered = 0
local function register_port()
    local tcp = DissectorTable.get("tcp.port")
    if registered ~= 0 then tcp:remove(registered, bookend) end
    registered = bookend.prefs.port
    if registered ~= 0 then tcp:add(registered, bookend) end
end
bookend.prefs_changed = register_port
register_port()
