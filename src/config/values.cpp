// config/values.cpp: the value syntaxes of DESIGN.md §3 (sizes, durations, IP ranges,
// endpoints, fingerprints) and the small types of schema.hpp.
#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include "config/detail.hpp"

namespace postern::config {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

// Reads leading decimal digits; false when there are none or they overflow.
bool take_number(std::string_view& s, std::uint64_t& value) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || end == s.data()) return false;
    s.remove_prefix(static_cast<std::size_t>(end - s.data()));
    return true;
}

bool multiply(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
    if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
    out = a * b;
    return true;
}

// Address bytes with the first `bits` bits compared.
template <std::size_t N>
bool same_prefix(const std::array<unsigned char, N>& a, const std::array<unsigned char, N>& b,
                 unsigned bits) {
    std::size_t whole = bits / 8;
    if (!std::equal(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(whole), b.begin())) return false;
    unsigned rest = bits % 8;
    if (rest == 0) return true;
    auto mask = static_cast<unsigned char>(0xFF << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

template <std::size_t N>
bool host_bits_clear(const std::array<unsigned char, N>& a, unsigned bits) {
    for (std::size_t i = 0; i < N; ++i) {
        unsigned first_bit = static_cast<unsigned>(i) * 8;
        if (first_bit + 8 <= bits) continue;
        unsigned keep = bits > first_bit ? bits - first_bit : 0;
        auto mask = static_cast<unsigned char>(keep == 0 ? 0xFF : (0xFF >> keep));
        if (a[i] & mask) return false;
    }
    return true;
}

// IPv4-mapped IPv6 (::ffff:192.0.2.1) is the IPv4 address it carries (DESIGN.md §3).
boost::asio::ip::address unmapped(const boost::asio::ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped())
        return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
    return a;
}

}  // namespace

std::optional<std::uint64_t> parse_size(std::string_view text) {
    std::string_view s = trim(text);
    std::uint64_t number = 0;
    if (!take_number(s, number)) return std::nullopt;
    s = trim(s);
    std::uint64_t unit = 0;
    if (s.empty() || iequals(s, "B")) unit = 1;
    else if (iequals(s, "KB") || iequals(s, "K")) unit = 1024ull;
    else if (iequals(s, "MB") || iequals(s, "M")) unit = 1024ull * 1024;
    else if (iequals(s, "GB") || iequals(s, "G")) unit = 1024ull * 1024 * 1024;
    else if (iequals(s, "TB") || iequals(s, "T")) unit = 1024ull * 1024 * 1024 * 1024;
    else return std::nullopt;
    std::uint64_t octets = 0;
    if (!multiply(number, unit, octets)) return std::nullopt;
    return octets;
}

std::optional<seconds> parse_duration(std::string_view text) {
    // One or more number+unit pairs ("90s", "1h30m"); a unit is always required, since a
    // bare "30" could mean seconds or minutes depending on who wrote it.
    std::string_view s = trim(text);
    if (s.empty()) return std::nullopt;
    std::uint64_t total = 0;
    while (!s.empty()) {
        std::uint64_t number = 0;
        if (!take_number(s, number) || s.empty()) return std::nullopt;
        std::uint64_t unit = 0;
        switch (s.front()) {
            case 's': unit = 1; break;
            case 'm': unit = 60; break;
            case 'h': unit = 3600; break;
            case 'd': unit = 86400; break;
            default: return std::nullopt;
        }
        s.remove_prefix(1);
        std::uint64_t part = 0;
        if (!multiply(number, unit, part) || total + part < total) return std::nullopt;
        total += part;
    }
    if (total > static_cast<std::uint64_t>(std::numeric_limits<seconds::rep>::max()))
        return std::nullopt;
    return seconds(static_cast<seconds::rep>(total));
}

bool ip_range::contains(const boost::asio::ip::address& a) const {
    auto candidate = unmapped(a);
    auto net = unmapped(network);
    if (candidate.is_v4() && net.is_v4())
        return same_prefix(candidate.to_v4().to_bytes(), net.to_v4().to_bytes(), prefix_length);
    if (candidate.is_v6() && net.is_v6())
        return same_prefix(candidate.to_v6().to_bytes(), net.to_v6().to_bytes(), prefix_length);
    return false;
}

bool receive_connector::mutual_tls() const {
    return std::find(auth_mechanisms.begin(), auth_mechanisms.end(), auth_mechanism::mutual_tls) !=
           auth_mechanisms.end();
}

std::string diagnostic::to_string() const {
    std::string out = file.string();
    if (line != 0) out += fmt::format(":{}", line);
    out += ": ";
    if (!key.empty()) out += key;
    if (!connector.empty()) out += fmt::format(" (connector \"{}\")", connector);
    if (!key.empty() || !connector.empty()) out += ": ";
    if (level == severity::warning) out += "warning: ";
    out += message;
    return out;
}

namespace detail {
std::string fold_domain(std::string_view d) {
    std::string out = fold_address(d);
    if (!out.empty() && out.back() == '.') out.pop_back();
    return out;
}
}  // namespace detail
using detail::fold_domain;

std::vector<std::string> all_accepted_domains(const configuration& config) {
    std::vector<std::string> out;
    for (const auto& d : config.server.accepted_domains) out.push_back(fold_domain(d));
    for (const auto& d : config.accepted_domains) out.push_back(fold_domain(d.name));
    return out;
}

const accepted_domain* find_accepted_domain(const configuration& config, std::string_view domain) {
    const auto wanted = fold_domain(domain);
    for (const auto& d : config.accepted_domains)
        if (fold_domain(d.name) == wanted) return &d;
    return nullptr;
}

bool ldap_source::same_settings(const ldap_source& o) const {
    return name == o.name && uri == o.uri && ca_file == o.ca_file && bind_dn == o.bind_dn &&
           bind_password_file == o.bind_password_file && base == o.base && filter == o.filter &&
           attributes == o.attributes && timeout == o.timeout && positive_ttl == o.positive_ttl &&
           negative_ttl == o.negative_ttl && max_stale == o.max_stale && connections == o.connections;
}

const ldap_source* find_ldap_source(const configuration& config, std::string_view name) {
    for (const auto& l : config.ldap_sources)
        if (l.name == name) return &l;
    return nullptr;
}

void name_connectors(const configuration& config, std::vector<diagnostic>& list) {
    auto name_of = [&](std::string_view key) -> std::string {
        for (std::string_view kind : {"receive_connector", "send_connector"}) {
            if (key.substr(0, kind.size() + 1) != fmt::format("{}[", kind)) continue;
            std::size_t index = 0;
            const auto digits = key.substr(kind.size() + 1);
            auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
            if (ec != std::errc() || end == digits.data() || end == digits.data() + digits.size() || *end != ']')
                return {};
            if (kind == "receive_connector")
                return index < config.receive_connectors.size() ? config.receive_connectors[index].name : "";
            return index < config.send_connectors.size() ? config.send_connectors[index].name : "";
        }
        return {};
    };
    for (auto& d : list)
        if (d.connector.empty()) d.connector = name_of(d.key);
}

std::uint32_t source_lines::line_of(std::string_view key) const {
    std::string k(key);
    for (;;) {
        if (auto it = lines_.find(k); it != lines_.end()) return it->second;
        auto dot = k.find_last_of(".[");
        if (dot == std::string::npos || dot == 0) return 0;
        k.resize(dot);
    }
}

namespace detail {

namespace {

/// Optimal string alignment distance (Damerau-Levenshtein without repeated edits).
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

}  // namespace

std::string closest_word(std::string_view word, const std::vector<std::string>& candidates) {
    const std::size_t limit = std::max<std::size_t>(1, word.size() / 3);
    std::string best;
    std::size_t best_distance = limit + 1;
    for (const auto& c : candidates) {
        const auto distance = edit_distance(word, c);
        if (distance < best_distance) best = c, best_distance = distance;
    }
    return best;
}

void diagnostics::error(std::string key, std::uint32_t line, std::string message) {
    errors.push_back({diagnostic::severity::error, file_, line, std::move(key), std::move(message), {}});
}

void diagnostics::warning(std::string key, std::uint32_t line, std::string message) {
    warnings.push_back({diagnostic::severity::warning, file_, line, std::move(key), std::move(message), {}});
}

std::string connector_key(std::string_view kind, std::size_t index, std::string_view key) {
    std::string out = fmt::format("{}[{}]", kind, index);
    if (!key.empty()) out += fmt::format(".{}", key);
    return out;
}

std::optional<ip_range> parse_ip_range(std::string_view text, std::string& why) {
    std::string_view s = trim(text);
    std::string_view address_text = s;
    std::optional<unsigned> prefix;
    if (auto slash = s.find('/'); slash != std::string_view::npos) {
        address_text = s.substr(0, slash);
        std::string_view digits = s.substr(slash + 1);
        unsigned value = 0;
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size()) {
            why = fmt::format("\"{}\" is not a range: the prefix length after '/' must be a number", text);
            return std::nullopt;
        }
        prefix = value;
    }
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(std::string(address_text), ec);
    if (ec) {
        why = fmt::format("\"{}\" is not an IP range such as \"192.0.2.0/24\" or \"2001:db8::/32\"", text);
        return std::nullopt;
    }
    unsigned max_prefix = address.is_v4() ? 32 : 128;
    unsigned bits = prefix.value_or(max_prefix);
    if (bits > max_prefix) {
        why = fmt::format("\"{}\": the prefix length is at most {}", text, max_prefix);
        return std::nullopt;
    }
    if (address.is_v6() && address.to_v6().is_v4_mapped() && bits >= 96) {
        address = unmapped(address);
        bits -= 96;
    }
    bool clear = address.is_v4() ? host_bits_clear(address.to_v4().to_bytes(), bits)
                                 : host_bits_clear(address.to_v6().to_bytes(), bits);
    if (!clear) {
        // "10.1.2.3/8" is almost always a typo for one of two different things.
        why = fmt::format("\"{}\" has bits set beyond the /{} prefix; write the network address", text, bits);
        return std::nullopt;
    }
    ip_range range;
    range.network = address;
    range.prefix_length = bits;
    range.text = std::string(s);
    return range;
}

bool is_domain_name(std::string_view text) {
    if (text.empty() || text.size() > 253) return false;
    if (text.back() == '.') text.remove_suffix(1);
    std::size_t start = 0;
    while (start <= text.size()) {
        std::size_t dot = text.find('.', start);
        std::string_view label = text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
        for (char c : label)
            if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return true;
}

std::optional<endpoint> parse_endpoint(std::string_view text, host_kind kind, std::uint16_t default_port,
                                       std::string& why) {
    std::string_view s = trim(text);
    std::string_view host;
    std::string_view port_text;
    bool bracketed = false;
    if (!s.empty() && s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos) {
            why = fmt::format("\"{}\": missing ']' after the IPv6 address", text);
            return std::nullopt;
        }
        host = s.substr(1, close - 1);
        std::string_view rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                why = fmt::format("\"{}\": expected ':' and a port after ']'", text);
                return std::nullopt;
            }
            port_text = rest.substr(1);
            if (port_text.empty()) {
                why = fmt::format("\"{}\": the port after ':' is missing", text);
                return std::nullopt;
            }
        }
        bracketed = true;
    } else {
        auto colon = s.rfind(':');
        if (colon != std::string_view::npos && s.find(':') != colon) {
            why = fmt::format("\"{}\": write IPv6 addresses in brackets, e.g. \"[2001:db8::1]:25\"", text);
            return std::nullopt;
        }
        host = s.substr(0, colon);
        if (colon != std::string_view::npos) {
            port_text = s.substr(colon + 1);
            if (port_text.empty()) {
                why = fmt::format("\"{}\": the port after ':' is missing", text);
                return std::nullopt;
            }
        }
    }
    if (host.empty()) {
        why = fmt::format("\"{}\": the address is missing", text);
        return std::nullopt;
    }
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(std::string(host), ec);
    if (ec) {
        if (bracketed || kind == host_kind::ip_address) {
            why = fmt::format("\"{}\": \"{}\" is not an IP address", text, host);
            return std::nullopt;
        }
        if (!is_domain_name(host)) {
            why = fmt::format("\"{}\": \"{}\" is neither an IP address nor a host name", text, host);
            return std::nullopt;
        }
    } else if (address.is_v6() && !bracketed) {
        why = fmt::format("\"{}\": write IPv6 addresses in brackets, e.g. \"[{}]:25\"", text, host);
        return std::nullopt;
    }
    std::uint16_t port = default_port;
    if (!port_text.empty()) {
        unsigned value = 0;
        auto [end, pec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
        if (pec != std::errc{} || end != port_text.data() + port_text.size() || value > 65535) {
            why = fmt::format("\"{}\": the port must be a number from 0 to 65535", text);
            return std::nullopt;
        }
        port = static_cast<std::uint16_t>(value);
    } else if (default_port == 0) {
        why = fmt::format("\"{}\": a port is required, e.g. \"{}:25\"", text, s);
        return std::nullopt;
    }
    endpoint e;
    e.host = std::string(host);
    e.port = port;
    e.text = std::string(s);
    return e;
}

std::optional<std::string> normalise_fingerprint(std::string_view text, std::string& why) {
    std::string_view s = trim(text);
    constexpr std::string_view prefix = "sha256:";
    if (s.size() < prefix.size() || !iequals(s.substr(0, prefix.size()), prefix)) {
        why = fmt::format("\"{}\" must start with \"sha256:\" followed by the certificate's SHA-256 in hex", text);
        return std::nullopt;
    }
    s.remove_prefix(prefix.size());
    std::string hex;
    for (char c : s) {
        if (c == ':') continue;
        if (!std::isxdigit(static_cast<unsigned char>(c))) {
            why = fmt::format("\"{}\": '{}' is not a hex digit", text, c);
            return std::nullopt;
        }
        hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (hex.size() != 64) {
        why = fmt::format("\"{}\": a SHA-256 fingerprint has 64 hex digits, this has {}", text, hex.size());
        return std::nullopt;
    }
    return hex;
}

std::string format_size(std::uint64_t octets) {
    constexpr std::pair<std::uint64_t, std::string_view> units[] = {
        {1024ull * 1024 * 1024 * 1024, "TB"}, {1024ull * 1024 * 1024, "GB"}, {1024ull * 1024, "MB"}, {1024ull, "KB"}};
    if (octets != 0)
        for (auto [unit, name] : units)
            if (octets % unit == 0) return fmt::format("{}{}", octets / unit, name);
    return fmt::format("{}B", octets);
}

std::string format_duration(seconds value) {
    auto s = value.count();
    constexpr std::pair<long long, char> units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}};
    if (s != 0)
        for (auto [unit, name] : units)
            if (s % unit == 0) return fmt::format("{}{}", s / unit, name);
    return fmt::format("{}s", s);
}

std::string system_fqdn() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = AI_CANONNAME;
    addrinfo* result = nullptr;
    std::string fqdn = name;
    if (::getaddrinfo(name, nullptr, &hints, &result) == 0 && result) {
        if (result->ai_canonname && result->ai_canonname[0] != '\0') fqdn = result->ai_canonname;
        ::freeaddrinfo(result);
    }
    return fqdn;
}

}  // namespace detail
}  // namespace postern::config
