// smtp/address.cpp: RFC 5321 §4.1.2 paths and the MAIL/RCPT parameters we support.
#include "smtp/address.hpp"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>
#include <cstring>
#include <set>
#include <vector>

namespace postern::smtp {
namespace {

bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_non_ascii(char c) { return static_cast<unsigned char>(c) >= 0x80; }
bool has_non_ascii(std::string_view s) {
    for (char c : s)
        if (is_non_ascii(c)) return true;
    return false;
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

// RFC 5322 atext, extended by RFC 6531 §3.3 with UTF8-non-ascii.
bool is_atext(char c) {
    if (is_alpha(c) || is_digit(c) || is_non_ascii(c)) return true;
    return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != '\0';
}

bool valid_dot_string(std::string_view s) {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    char prev = 0;
    for (char c : s) {
        if (c == '.') {
            if (prev == '.') return false;
        } else if (!is_atext(c)) {
            return false;
        }
        prev = c;
    }
    return true;
}

// Quoted-string of RFC 5321 §4.1.2 (s includes the quotes).
bool valid_quoted_string(std::string_view s) {
    if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
    for (std::size_t i = 1; i + 1 < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\\') {
            if (i + 2 >= s.size()) return false;
            const auto q = static_cast<unsigned char>(s[++i]);
            if (q < 32 || q > 126) return false;
        } else if (c == '"') {
            return false;
        } else if (!((c >= 32 && c <= 126) || c >= 0x80)) {
            return false;
        }
    }
    return true;
}

// Finds where the local part ends: the '@' after a Dot-string or Quoted-string.
std::size_t local_part_end(std::string_view mailbox) {
    if (!mailbox.empty() && mailbox.front() == '"') {
        for (std::size_t i = 1; i < mailbox.size(); ++i) {
            if (mailbox[i] == '\\') {
                ++i;
            } else if (mailbox[i] == '"') {
                return i + 1;
            }
        }
        return std::string_view::npos;
    }
    return mailbox.rfind('@');
}

bool valid_mailbox(std::string_view mailbox, bool utf8) {
    if (!utf8 && has_non_ascii(mailbox)) return false;
    if (has_non_ascii(mailbox) && !valid_utf8(mailbox)) return false;
    const auto end = local_part_end(mailbox);
    if (end == std::string_view::npos || end >= mailbox.size() || mailbox[end] != '@') return false;
    const auto local = mailbox.substr(0, end);
    const auto domain = mailbox.substr(end + 1);
    if (local.size() > 64) return false;                        // RFC 5321 §4.5.3.1.1
    const bool local_ok = local.front() == '"' ? valid_quoted_string(local) : valid_dot_string(local);
    if (!local_ok) return false;
    if (!domain.empty() && domain.front() == '[') return valid_address_literal(domain);
    return valid_domain(domain, utf8);
}

// RFC 5321 A-d-l: "@one.example,@two.example" (ignored, §4.1.2 and Appendix C).
bool valid_source_route(std::string_view adl) {
    while (!adl.empty()) {
        if (adl.front() != '@') return false;
        adl.remove_prefix(1);
        auto comma = adl.find(',');
        if (!valid_domain(adl.substr(0, comma))) return false;
        if (comma == std::string_view::npos) break;
        adl.remove_prefix(comma + 1);
        if (adl.empty()) return false;
    }
    return true;
}

// xtext of RFC 3461 §4: "+" HEXCHAR HEXCHAR or a printable other than "+" and "=".
bool valid_xtext(std::string_view s, bool utf8) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '+') {
            auto hex = [](char h) { return is_digit(h) || (h >= 'A' && h <= 'F'); };
            if (i + 2 >= s.size() || !hex(s[i + 1]) || !hex(s[i + 2])) return false;
            i += 2;
        } else if (c == '=' || c < 33 || (c > 126 && !(utf8 && c >= 0x80))) {
            return false;
        }
    }
    return true;
}

struct split_path {
    bool ok = false;
    std::string_view inner;     // between < and >
    std::string_view rest;      // after >
};

// "FROM:<...> rest": finds the closing '>' outside a quoted local part.
split_path split(std::string_view argument, std::string_view keyword) {
    split_path r;
    if (argument.size() < keyword.size() || !iequals(argument.substr(0, keyword.size()), keyword)) return r;
    argument.remove_prefix(keyword.size());
    while (!argument.empty() && argument.front() == ' ') argument.remove_prefix(1);   // "FROM: <a@b>"
    if (argument.empty() || argument.front() != '<') return r;
    bool quoted = false;
    for (std::size_t i = 1; i < argument.size(); ++i) {
        const char c = argument[i];
        if (quoted && c == '\\') {
            ++i;
        } else if (c == '"') {
            quoted = !quoted;
        } else if (c == '>' && !quoted) {
            r.inner = argument.substr(1, i - 1);
            r.rest = argument.substr(i + 1);
            if (!r.rest.empty() && r.rest.front() != ' ') return r;
            r.ok = true;
            return r;
        }
    }
    return r;
}

struct parameter {
    std::string keyword;        // upper-case
    std::string_view value;
    bool has_value = false;
};

// esmtp-param *(SP esmtp-param), RFC 5321 §4.1.2; RFC 6531 §3.3 allows UTF-8 values.
bool split_parameters(std::string_view rest, std::vector<parameter>& out) {
    while (!rest.empty()) {
        while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
        if (rest.empty()) break;
        auto sp = rest.find(' ');
        auto token = rest.substr(0, sp);
        rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp);
        auto eq = token.find('=');
        auto keyword = token.substr(0, eq);
        if (keyword.empty() || !(is_alpha(keyword.front()) || is_digit(keyword.front()))) return false;
        for (char c : keyword)
            if (!(is_alpha(c) || is_digit(c) || c == '-')) return false;
        parameter p{upper(keyword), {}, eq != std::string_view::npos};
        if (p.has_value) {
            p.value = token.substr(eq + 1);
            if (p.value.empty()) return false;
            for (char c : p.value) {
                const auto u = static_cast<unsigned char>(c);
                if (u < 33 || u == '=' || u == 127) return false;
            }
        }
        out.push_back(std::move(p));
    }
    return true;
}

template <typename T>
parse_result<T> fail(address_error e, std::string detail) {
    parse_result<T> r;
    r.error = e;
    r.detail = std::move(detail);
    return r;
}

}  // namespace

std::string xtext_encode(std::string_view s) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 33 || c > 126 || c == '+' || c == '=') {
            out += '+';
            out += hex[c >> 4];
            out += hex[c & 0x0f];
        } else {
            out += ch;
        }
    }
    return out;
}

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) { ++i; continue; }
        std::size_t len;
        std::uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return false;
        if (i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

bool valid_domain(std::string_view domain, bool utf8) {
    if (domain.empty() || domain.size() > 255) return false;
    if (has_non_ascii(domain) && (!utf8 || !valid_utf8(domain))) return false;
    std::size_t label_start = 0;
    for (std::size_t i = 0; i <= domain.size(); ++i) {
        if (i == domain.size() || domain[i] == '.') {
            auto label = domain.substr(label_start, i - label_start);
            if (label.empty() || label.size() > 63) return false;
            if (label.front() == '-' || label.back() == '-') return false;
            for (char c : label)
                if (!(is_alpha(c) || is_digit(c) || c == '-' || is_non_ascii(c))) return false;
            label_start = i + 1;
        }
    }
    return true;
}

bool valid_address_literal(std::string_view literal) {
    if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']') return false;
    auto inner = std::string(literal.substr(1, literal.size() - 2));
    unsigned char buf[16];
    if (inner.size() > 5 && iequals(std::string_view(inner).substr(0, 5), "IPv6:"))
        return inet_pton(AF_INET6, inner.c_str() + 5, buf) == 1;
    // IPv4-address-literal: Snum 3("." Snum), no leading '+' or spaces.
    if (!inner.empty() && is_digit(inner.front())) {
        int parts = 0;
        std::size_t i = 0;
        while (i <= inner.size()) {
            std::size_t j = i;
            while (j < inner.size() && is_digit(inner[j])) ++j;
            if (j == i || j - i > 3) return false;
            if (std::stoi(inner.substr(i, j - i)) > 255) return false;
            ++parts;
            if (j == inner.size()) break;
            if (inner[j] != '.') return false;
            i = j + 1;
        }
        return parts == 4;
    }
    // General-address-literal: Standardized-tag ":" 1*dcontent (RFC 5321 §4.1.3).
    auto colon = inner.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == inner.size()) return false;
    for (std::size_t i = 0; i < colon; ++i)
        if (!(is_alpha(inner[i]) || is_digit(inner[i]) || inner[i] == '-')) return false;
    for (std::size_t i = colon + 1; i < inner.size(); ++i) {
        const auto c = static_cast<unsigned char>(inner[i]);
        if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\') return false;
    }
    return true;
}

std::string domain_of(std::string_view address) {
    auto at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    std::string d(address.substr(at + 1));
    for (auto& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return d;
}

namespace {

// Validates a path's inner text and strips a source route. `utf8` allows UTF-8.
address_error check_path(std::string_view inner, bool utf8, std::string& address, std::string& detail) {
    if (inner.size() + 2 > 256) {                                // RFC 5321 §4.5.3.1.3
        detail = "path longer than 256 octets";
        return address_error::bad_address;
    }
    if (!inner.empty() && inner.front() == '@') {
        auto colon = inner.find(':');
        if (colon == std::string_view::npos || !valid_source_route(inner.substr(0, colon))) {
            detail = "malformed source route";
            return address_error::bad_address;
        }
        inner.remove_prefix(colon + 1);
    }
    if (!valid_mailbox(inner, true)) {
        detail = "malformed mailbox";
        return address_error::bad_address;
    }
    if (!utf8 && has_non_ascii(inner)) {
        detail = "UTF-8 address without SMTPUTF8";
        return address_error::utf8_not_allowed;
    }
    address = std::string(inner);
    return address_error::none;
}

}  // namespace

parse_result<mail_from_args> parse_mail_from(std::string_view argument) {
    using R = mail_from_args;
    auto sp = split(argument, "FROM:");
    if (!sp.ok) return fail<R>(address_error::syntax, "expected FROM:<address>");
    std::vector<parameter> params;
    if (!split_parameters(sp.rest, params)) return fail<R>(address_error::bad_parameter, "malformed parameter");

    parse_result<R> r;
    std::set<std::string> seen;
    for (const auto& p : params) {
        if (!seen.insert(p.keyword).second) return fail<R>(address_error::bad_parameter, "repeated " + p.keyword);
        if (p.keyword == "SIZE") {                               // RFC 1870 §3
            std::uint64_t v = 0;
            auto [ptr, ec] = std::from_chars(p.value.data(), p.value.data() + p.value.size(), v);
            if (!p.has_value || ec != std::errc() || ptr != p.value.data() + p.value.size() || p.value.size() > 20)
                return fail<R>(address_error::bad_parameter, "bad SIZE value");
            r.value.size = v;
        } else if (p.keyword == "BODY") {                        // RFC 6152 §2
            if (iequals(p.value, "7BIT")) r.value.body = body_type::seven_bit;
            else if (iequals(p.value, "8BITMIME")) r.value.body = body_type::eight_bit_mime;
            else return fail<R>(address_error::bad_parameter, "bad BODY value");
        } else if (p.keyword == "SMTPUTF8") {                    // RFC 6531 §3.4
            if (p.has_value) return fail<R>(address_error::bad_parameter, "SMTPUTF8 takes no value");
            r.value.smtputf8 = true;
        } else if (p.keyword == "REQUIRETLS") {                  // RFC 8689 §4.1
            if (p.has_value) return fail<R>(address_error::bad_parameter, "REQUIRETLS takes no value");
            r.value.requiretls = true;
        } else if (p.keyword == "RET") {                         // RFC 3461 §4.3
            if (iequals(p.value, "FULL")) r.value.ret = "FULL";
            else if (iequals(p.value, "HDRS")) r.value.ret = "HDRS";
            else return fail<R>(address_error::bad_parameter, "bad RET value");
        } else if (p.keyword == "ENVID") {                       // RFC 3461 §4.4
            if (!p.has_value || p.value.size() > 100 || !valid_xtext(p.value, false))
                return fail<R>(address_error::bad_parameter, "bad ENVID value");
            r.value.envid = std::string(p.value);
        } else {
            return fail<R>(address_error::unsupported_parameter, "unsupported parameter " + p.keyword);
        }
    }
    for (const auto& p : params)
        if (p.has_value && has_non_ascii(p.value) && !r.value.smtputf8)
            return fail<R>(address_error::bad_parameter, "UTF-8 parameter value without SMTPUTF8");

    if (sp.inner.empty()) return r;                              // null reverse path "<>"
    auto e = check_path(sp.inner, r.value.smtputf8, r.value.address, r.detail);
    if (e != address_error::none) return fail<R>(e, r.detail);
    return r;
}

parse_result<rcpt_to_args> parse_rcpt_to(std::string_view argument, bool smtputf8) {
    using R = rcpt_to_args;
    auto sp = split(argument, "TO:");
    if (!sp.ok) return fail<R>(address_error::syntax, "expected TO:<address>");
    std::vector<parameter> params;
    if (!split_parameters(sp.rest, params)) return fail<R>(address_error::bad_parameter, "malformed parameter");

    parse_result<R> r;
    std::set<std::string> seen;
    for (const auto& p : params) {
        if (!seen.insert(p.keyword).second) return fail<R>(address_error::bad_parameter, "repeated " + p.keyword);
        if (p.has_value && has_non_ascii(p.value) && !smtputf8)
            return fail<R>(address_error::bad_parameter, "UTF-8 parameter value without SMTPUTF8");
        if (p.keyword == "NOTIFY") {                             // RFC 3461 §4.1
            if (!p.has_value) return fail<R>(address_error::bad_parameter, "NOTIFY needs a value");
            auto value = upper(p.value);
            if (value != "NEVER") {
                std::set<std::string> kinds;
                std::string_view rest = value;
                while (true) {
                    auto comma = rest.find(',');
                    auto k = std::string(rest.substr(0, comma));
                    if ((k != "SUCCESS" && k != "FAILURE" && k != "DELAY") || !kinds.insert(k).second)
                        return fail<R>(address_error::bad_parameter, "bad NOTIFY value");
                    if (comma == std::string_view::npos) break;
                    rest.remove_prefix(comma + 1);
                }
            }
            r.value.notify = value;
        } else if (p.keyword == "ORCPT") {                       // RFC 3461 §4.2
            auto semi = p.value.find(';');
            if (!p.has_value || p.value.size() > 500 || semi == std::string_view::npos || semi == 0 ||
                semi + 1 == p.value.size())
                return fail<R>(address_error::bad_parameter, "bad ORCPT value");
            for (char c : p.value.substr(0, semi))
                if (!is_atext(c) || is_non_ascii(c)) return fail<R>(address_error::bad_parameter, "bad ORCPT type");
            if (!valid_xtext(p.value.substr(semi + 1), smtputf8))
                return fail<R>(address_error::bad_parameter, "bad ORCPT value");
            r.value.orcpt = std::string(p.value);
        } else {
            return fail<R>(address_error::unsupported_parameter, "unsupported parameter " + p.keyword);
        }
    }
    if (iequals(sp.inner, "Postmaster")) {                       // RFC 5321 §4.5.1
        r.value.address = std::string(sp.inner);
        r.value.postmaster = true;
        return r;
    }
    if (sp.inner.empty()) return fail<R>(address_error::bad_address, "empty forward path");
    auto e = check_path(sp.inner, smtputf8, r.value.address, r.detail);
    if (e != address_error::none) return fail<R>(e, r.detail);
    return r;
}

}  // namespace postern::smtp
