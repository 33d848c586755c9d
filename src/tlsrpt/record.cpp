// tlsrpt/record.cpp: see record.hpp.
#include "tlsrpt/record.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace postern::tlsrpt {

namespace {

constexpr std::string_view version = "v=TLSRPTv1";

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
    return s;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// RFC 3986 §2.1 percent-decoding; nullopt for a broken escape or a decoded control byte.
std::optional<std::string> percent_decoded(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size()) return std::nullopt;
            const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            c = static_cast<char>(hi * 16 + lo);
            i += 2;
        }
        if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) return std::nullopt;
        out += c;
    }
    return out;
}

bool plausible_address(const std::string& a) {
    const auto at = a.rfind('@');
    if (at == std::string::npos || at == 0 || at + 1 >= a.size()) return false;
    for (char c : a)
        if (c == '<' || c == '>' || c == ',' || c == ';' || c == '"' || c == '\\') return false;
    return a.find('.', at) != std::string::npos || a.compare(at + 1, std::string::npos, "localhost") == 0;
}

bool valid_host(std::string_view h) {
    if (h.empty() || h.size() > 253) return false;
    for (char c : h)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') return false;
    return h.front() != '.' && h.front() != '-';
}

std::optional<report_uri> parse_mailto(std::string_view rest, std::string_view uri, std::string& error) {
    // RFC 6068: mailto:addr[,addr][?headers]; the rua list already split on commas, and
    // headers (subject, body) mean nothing to a report: dropped.
    rest = rest.substr(0, rest.find('?'));
    auto address = percent_decoded(rest);
    if (!address || !plausible_address(*address)) {
        error = "\"" + std::string(uri) + "\" is not a mail address";
        return std::nullopt;
    }
    report_uri r;
    r.what = report_uri::scheme::mailto;
    r.uri = std::string(uri);
    r.address = std::move(*address);
    return r;
}

std::optional<report_uri> parse_https(std::string_view rest, std::string_view uri, std::string& error) {
    // RFC 9110 §4.2.2: //authority path-abempty [ "?" query ]; no user info, no fragment.
    if (!rest.starts_with("//")) {
        error = "\"" + std::string(uri) + "\" has no host";
        return std::nullopt;
    }
    rest.remove_prefix(2);
    const auto slash = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, slash);
    std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    if (path.front() == '?') path.insert(path.begin(), '/');
    if (path.find('#') != std::string::npos) path.erase(path.find('#'));
    report_uri r;
    r.what = report_uri::scheme::https;
    r.uri = std::string(uri);
    if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        const auto digits = authority.substr(colon + 1);
        unsigned port = 0;
        auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
        if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65535) {
            error = "\"" + std::string(uri) + "\" has a bad port";
            return std::nullopt;
        }
        r.port = static_cast<std::uint16_t>(port);
        authority = authority.substr(0, colon);
    }
    if (!valid_host(authority)) {
        error = "\"" + std::string(uri) + "\" has no usable host name";
        return std::nullopt;
    }
    for (char c : path)
        if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
            error = "\"" + std::string(uri) + "\" has a control character or space in its path";
            return std::nullopt;
        }
    r.host = std::string(authority);
    for (auto& c : r.host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!r.host.empty() && r.host.back() == '.') r.host.pop_back();
    r.path = std::move(path);
    return r;
}

}  // namespace

std::optional<report_uri> parse_report_uri(std::string_view uri, std::string& error) {
    uri = trim(uri);
    if (starts_with_nocase(uri, "mailto:")) return parse_mailto(uri.substr(7), uri, error);
    if (starts_with_nocase(uri, "https:")) return parse_https(uri.substr(6), uri, error);
    error = "\"" + std::string(uri) + "\" is neither mailto: nor https:";
    return std::nullopt;
}

std::optional<record> parse_record(std::string_view text, std::string& error) {
    // §3: tlsrpt-record = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim];
    // field-delim = *WSP ";" *WSP. The version comes first, exactly.
    text = trim(text);
    const auto after_version = trim(text.substr(std::min(text.size(), version.size())));
    if (!text.starts_with(version) || (!after_version.empty() && after_version.front() != ';')) {
        error = "the record does not start with v=TLSRPTv1";
        return std::nullopt;
    }
    std::string_view rest = text.substr(version.size());
    record out;
    bool rua_seen = false;
    std::string skipped;
    while (!rest.empty()) {
        const auto semi = rest.find(';');
        const auto field = trim(rest.substr(0, semi));
        rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
        if (field.empty()) continue;
        const auto eq = field.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            error = "field \"" + std::string(field) + "\" is not name=value";
            return std::nullopt;
        }
        const auto name = field.substr(0, eq);
        if (name != "rua") continue;   // an extension (tlsrpt-extension): ignored
        if (rua_seen) {
            error = "rua appears twice";
            return std::nullopt;
        }
        rua_seen = true;
        std::string_view list = field.substr(eq + 1);
        while (!list.empty()) {
            const auto comma = list.find(',');
            const auto one = trim(list.substr(0, comma));
            list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
            if (one.empty()) continue;
            std::string why;
            if (auto uri = parse_report_uri(one, why)) out.rua.push_back(std::move(*uri));
            else skipped = why;
        }
    }
    if (!rua_seen) {
        error = "the record has no rua field";
        return std::nullopt;
    }
    if (out.rua.empty()) {
        error = skipped.empty() ? "rua names no address" : "rua names no usable address: " + skipped;
        return std::nullopt;
    }
    return out;
}

std::optional<record> select_record(const std::vector<std::string>& texts, std::string& error) {
    std::vector<std::string_view> candidates;
    for (const auto& t : texts) {
        const auto text = trim(t);
        if (text.starts_with(version) && (text.size() == version.size() || is_wsp(text[version.size()]) ||
                                          text[version.size()] == ';'))
            candidates.push_back(text);
    }
    if (candidates.empty()) {
        error = "no v=TLSRPTv1 record";
        return std::nullopt;
    }
    if (candidates.size() > 1) {
        error = "more than one v=TLSRPTv1 record";
        return std::nullopt;
    }
    return parse_record(candidates.front(), error);
}

}  // namespace postern::tlsrpt
