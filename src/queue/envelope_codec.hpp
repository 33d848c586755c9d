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

#include "smtp/envelope.hpp"

namespace postern::queue {

using smtp::envelope;
using smtp::recipient;
using smtp::recipient_state;
using smtp::sys_time;

/// Formats. encode_envelope() writes the newest; decode_envelope() reads every one.
/// Bump it when the field list changes, and keep decoding the older formats.
///   v1: the first field list.
///   v2: v1 + `held` and `body_size` after delay_notice_sent (v1 records read as
///       held = false, body_size = 0).
///   v3: v2 + each recipient's `notify` after its orcpt (v1 and v2 records read as
///       notify = "", which RFC 3461 §4.1 treats as NOTIFY absent).
///   v4: v3 + `body_in_file` after body_size (older records: false, the body is in the store).
///   v5: v4 + `requiretls` and `tls_optional` after body_in_file (older records: false) and
///       each recipient's `last_tls` after its last_reply (older records: "").
inline constexpr unsigned char envelope_format_v1 = 1;
inline constexpr unsigned char envelope_format_v2 = 2;
inline constexpr unsigned char envelope_format_v3 = 3;
inline constexpr unsigned char envelope_format_v4 = 4;
inline constexpr unsigned char envelope_format_v5 = 5;
inline constexpr unsigned char envelope_format_current = envelope_format_v5;

std::string encode_envelope(const envelope& env);
/// The v1 form (no `held`, no `body_size`): kept so tests can prove old records still read.
std::string encode_envelope_v1(const envelope& env);
/// The v2 form (no recipient `notify`), for the same reason.
std::string encode_envelope_v2(const envelope& env);
/// The v3 form (no `body_in_file`), for the same reason.
std::string encode_envelope_v3(const envelope& env);
/// The v4 form (no recipient `last_tls`), for the same reason.
std::string encode_envelope_v4(const envelope& env);
std::optional<envelope> decode_envelope(std::string_view bytes);

}  // namespace postern::queue
