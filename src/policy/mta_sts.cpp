// policy/mta_sts.cpp: see mta_sts.hpp.
#include "policy/mta_sts.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace postern::policy {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    while (!out.empty() && out.back() == '.') out.pop_back();
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

bool alphanumeric(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isalnum(c) != 0; });
}

}  // namespace

std::optional<std::string> sts_record_id(const std::vector<std::string>& texts) {
    std::optional<std::string> found;
    int records = 0;
    for (const auto& text : texts) {
        std::string_view rest = text;
        // §3.1: the record starts with "v=STSv1"; fields are separated by ";".
        std::optional<std::string> id;
        bool first = true, versioned = false, malformed = false;
        while (!rest.empty()) {
            const auto semi = rest.find(';');
            const auto field = trim(rest.substr(0, semi));
            rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
            if (field.empty()) continue;
            const auto eq = field.find('=');
            if (eq == std::string_view::npos) {
                malformed = true;
                break;
            }
            const auto key = trim(field.substr(0, eq));
            const auto value = trim(field.substr(eq + 1));
            if (first) {
                versioned = key == "v" && value == "STSv1";
                first = false;
                if (!versioned) break;
            } else if (key == "id") {
                if (value.empty() || value.size() > 32 || !alphanumeric(value)) malformed = true;
                else id = std::string(value);
            }
        }
        if (!versioned) continue;      // not an STS record at all
        ++records;
        if (!malformed && id) found = id;
        else found.reset();
    }
    if (records != 1) return std::nullopt;
    return found;
}

const char* to_string(sts_policy::mode m) {
    switch (m) {
    case sts_policy::mode::enforce: return "enforce";
    case sts_policy::mode::testing: return "testing";
    case sts_policy::mode::none: return "none";
    }
    return "none";
}

bool mx_pattern_matches(std::string_view pattern_in, std::string_view host_in) {
    const std::string pattern = lower(pattern_in), host = lower(host_in);
    if (pattern.empty() || host.empty()) return false;
    if (pattern.starts_with("*.")) {
        const std::string_view suffix = std::string_view(pattern).substr(1);   // ".example.net"
        if (host.size() <= suffix.size() || !host.ends_with(suffix)) return false;
        const std::string_view label = std::string_view(host).substr(0, host.size() - suffix.size());
        return label.find('.') == std::string_view::npos;                      // exactly one label
    }
    return pattern == host;
}

bool sts_policy::lists(std::string_view host) const {
    return std::any_of(mx.begin(), mx.end(), [&](const std::string& p) { return mx_pattern_matches(p, host); });
}

std::optional<sts_policy> parse_sts_policy(std::string_view text, std::string& error) {
    sts_policy p;
    bool version = false, mode = false, max_age = false;
    while (!text.empty()) {
        const auto nl = text.find('\n');
        const auto line = trim(text.substr(0, nl));
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        if (line.empty()) continue;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos) {
            error = "a line without \"key: value\"";
            return std::nullopt;
        }
        const auto key = trim(line.substr(0, colon));
        const auto value = trim(line.substr(colon + 1));
        if (key == "version") {
            if (value != "STSv1") {
                error = "version is not STSv1";
                return std::nullopt;
            }
            version = true;
        } else if (key == "mode") {
            if (value == "enforce") p.what = sts_policy::mode::enforce;
            else if (value == "testing") p.what = sts_policy::mode::testing;
            else if (value == "none") p.what = sts_policy::mode::none;
            else {
                error = "unknown mode \"" + std::string(value) + "\"";
                return std::nullopt;
            }
            mode = true;
        } else if (key == "mx") {
            // §3.2: a host name, or "*." and one; nothing else is a pattern.
            std::string pattern = lower(value);
            const bool name_chars = std::all_of(pattern.begin(), pattern.end(), [](unsigned char c) {
                return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '*' || c == '_';
            });
            const auto star = pattern.rfind('*');
            if (pattern.empty() || !name_chars || pattern.front() == '.' || pattern.find("..") != std::string::npos ||
                (star != std::string::npos && (star != 0 || !pattern.starts_with("*.") || pattern.size() < 3))) {
                error = "mx \"" + std::string(value) + "\" is not a host name or *.name";
                return std::nullopt;
            }
            p.mx.push_back(std::move(pattern));
        } else if (key == "max_age") {
            std::uint64_t seconds = 0;
            auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
            if (ec != std::errc() || ptr != value.data() + value.size() || value.size() > 10) {
                error = "max_age is not a number of seconds";
                return std::nullopt;
            }
            p.max_age = std::chrono::seconds(std::min<std::uint64_t>(seconds, 31557600));   // §3.2: at most a year
            max_age = true;
        }   // §3.2: other keys are ignored
    }
    if (!version || !mode || !max_age) {
        error = !version ? "no version" : !mode ? "no mode" : "no max_age";
        return std::nullopt;
    }
    if (p.what != sts_policy::mode::none && p.mx.empty()) {
        error = "no mx in an enforce or testing policy";
        return std::nullopt;
    }
    return p;
}

}  // namespace postern::policy
