// route/dns_records.hpp: the record data libunbound hands back, decoded.
//
// libunbound returns each answer's rdata in wire format with names uncompressed
// (struct ub_result, data[]/len[]). Standards: RFC 1035 §3.1 (names), §3.3.9 (MX),
// §3.4.1 (A); RFC 3596 §2.2 (AAAA); RFC 7505 (null MX, whose exchange is the root ".");
// RFC 6698 §2.1 (TLSA).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace postern::route {

struct mx_record {
    std::uint16_t preference = 0;
    std::string exchange;          // without the trailing dot; "" is the root (null MX)
};

/// RFC 6698 §2.1: certificate usage, selector, matching type, association data.
struct tlsa_record {
    std::uint8_t usage = 0;
    std::uint8_t selector = 0;
    std::uint8_t matching = 0;
    std::vector<std::uint8_t> data;
    friend bool operator==(const tlsa_record&, const tlsa_record&) = default;
};

/// A wire-format domain name as text, without the trailing dot ("" for the root).
/// Bytes outside letters, digits, '-' and '_' are written as \DDD (RFC 1035 §5.1), so a
/// label that contains a dot cannot pass for two labels. Empty optional when malformed
/// (truncated, a compression pointer, a label over 63 octets or a name over 255).
std::optional<std::string> decode_wire_name(std::span<const std::uint8_t> wire, std::size_t& consumed);

std::optional<mx_record> decode_mx(std::span<const std::uint8_t> rdata);
std::optional<boost::asio::ip::address> decode_a(std::span<const std::uint8_t> rdata);
std::optional<boost::asio::ip::address> decode_aaaa(std::span<const std::uint8_t> rdata);
/// Empty optional when shorter than the three fixed octets and one of data.
std::optional<tlsa_record> decode_tlsa(std::span<const std::uint8_t> rdata);
/// RFC 1035 §3.3.14: one or more <character-string>s, concatenated (as RFC 8461 §3.1
/// reads a TXT record). Empty optional when a length runs past the end.
std::optional<std::string> decode_txt(std::span<const std::uint8_t> rdata);

}  // namespace postern::route
