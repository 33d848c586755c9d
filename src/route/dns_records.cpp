// route/dns_records.cpp: decoding of MX, A and AAAA rdata.
#include "route/dns_records.hpp"

#include <array>

#include <fmt/format.h>

namespace postern::route {

std::optional<std::string> decode_wire_name(std::span<const std::uint8_t> wire, std::size_t& consumed) {
    std::string text;
    std::size_t pos = 0;
    while (true) {
        if (pos >= wire.size()) return std::nullopt;
        const std::uint8_t length = wire[pos++];
        if (length == 0) break;
        // 0xC0: a compression pointer (RFC 1035 §4.1.4); libunbound never leaves one in
        // rdata, so one here means the data is not what we expect. 0x40/0x80 are unused.
        if (length > 63) return std::nullopt;
        if (pos + length > wire.size()) return std::nullopt;
        if (!text.empty()) text += '.';
        for (std::size_t i = 0; i < length; ++i) {
            const auto c = static_cast<unsigned char>(wire[pos + i]);
            const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                               (c >= '0' && c <= '9') || c == '-' || c == '_';
            if (plain)
                text += static_cast<char>(c);
            else
                text += fmt::format("\\{:03d}", c);
        }
        pos += length;
    }
    if (pos > 255) return std::nullopt;   // RFC 1035 §2.3.4: names are at most 255 octets
    consumed = pos;
    return text;
}

std::optional<mx_record> decode_mx(std::span<const std::uint8_t> rdata) {
    if (rdata.size() < 3) return std::nullopt;
    mx_record mx;
    mx.preference = static_cast<std::uint16_t>((rdata[0] << 8) | rdata[1]);
    std::size_t consumed = 0;
    auto name = decode_wire_name(rdata.subspan(2), consumed);
    if (!name || consumed != rdata.size() - 2) return std::nullopt;
    mx.exchange = std::move(*name);
    return mx;
}

std::optional<boost::asio::ip::address> decode_a(std::span<const std::uint8_t> rdata) {
    if (rdata.size() != 4) return std::nullopt;
    boost::asio::ip::address_v4::bytes_type bytes;
    std::copy(rdata.begin(), rdata.end(), bytes.begin());
    return boost::asio::ip::address(boost::asio::ip::address_v4(bytes));
}

std::optional<boost::asio::ip::address> decode_aaaa(std::span<const std::uint8_t> rdata) {
    if (rdata.size() != 16) return std::nullopt;
    boost::asio::ip::address_v6::bytes_type bytes;
    std::copy(rdata.begin(), rdata.end(), bytes.begin());
    return boost::asio::ip::address(boost::asio::ip::address_v6(bytes));
}

std::optional<tlsa_record> decode_tlsa(std::span<const std::uint8_t> rdata) {
    if (rdata.size() < 4) return std::nullopt;
    tlsa_record r;
    r.usage = rdata[0];
    r.selector = rdata[1];
    r.matching = rdata[2];
    r.data.assign(rdata.begin() + 3, rdata.end());
    return r;
}

std::optional<std::string> decode_txt(std::span<const std::uint8_t> rdata) {
    std::string out;
    std::size_t at = 0;
    while (at < rdata.size()) {
        const std::size_t length = rdata[at++];
        if (length > rdata.size() - at) return std::nullopt;
        out.append(reinterpret_cast<const char*>(rdata.data() + at), length);
        at += length;
    }
    return out;
}

}  // namespace postern::route
