// queue/envelope_codec.hpp: the on-disk form of an envelope.
//
// A compact, versioned binary record: one format byte, then the fields in a fixed order.
// Strings are a varint length and the bytes; integers are varints; time points are the
// system_clock tick count as 8 little-endian bytes (exact round trip).
// Security: decode() trusts nothing. Every length is checked against what is left, so a
// damaged record yields std::nullopt, never a read past the end or a huge allocation.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "queue/message.hpp"

namespace postern::queue {

/// Format written by encode_envelope(). Bump it when the field list changes, and keep
/// decoding the older formats.
inline constexpr unsigned char envelope_format_v1 = 1;

std::string encode_envelope(const envelope& env);
std::optional<envelope> decode_envelope(std::string_view bytes);

}  // namespace postern::queue
