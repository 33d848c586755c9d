// route/address_space.hpp: which send connector serves a recipient domain.
//
// A send connector lists address spaces (DESIGN.md §3): "partner.test" (that domain only),
// "*.partner.test" (its subdomains, not the domain itself) and "*" (everything else).
// The most specific match wins: an exact name, then the longest "*.suffix", then "*".
// Domain names compare case-insensitively (RFC 1035 §2.3.3) and a trailing dot (the
// absolute form) changes nothing.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace postern::route {

/// Lower case, one trailing dot removed: the form in which names are compared.
std::string normalize_domain(std::string_view name);

/// True when two domain names are the same name (case and a trailing dot ignored).
bool same_domain(std::string_view a, std::string_view b);

/// How specifically `pattern` matches `domain`; empty when it does not match at all.
/// Higher is more specific: "*" ranks lowest, "*.suffix" by the length of its suffix,
/// and an exact name above every wildcard.
std::optional<std::size_t> address_space_rank(std::string_view pattern, std::string_view domain);

}  // namespace postern::route
