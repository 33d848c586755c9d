// smtp/reply.cpp: wire format of replies (RFC 5321 §4.2.1, RFC 2034 §4).
#include "smtp/reply.hpp"

#include <fmt/format.h>

namespace postern::smtp {

std::string enhanced_code::to_string() const {
    if (empty()) return {};
    return fmt::format("{}.{}.{}", klass, subject, detail);
}

std::vector<std::string> reply::lines() const {
    std::vector<std::string> parts;
    std::string_view rest = text;
    for (;;) {
        auto nl = rest.find('\n');
        parts.emplace_back(rest.substr(0, nl));
        if (nl == std::string_view::npos) break;
        rest.remove_prefix(nl + 1);
    }
    std::vector<std::string> out;
    out.reserve(parts.size());
    const std::string status_text = status.to_string();
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const char sep = i + 1 < parts.size() ? '-' : ' ';
        if (status_text.empty())
            out.push_back(fmt::format("{}{}{}", code, sep, parts[i]));
        else
            out.push_back(fmt::format("{}{}{} {}", code, sep, status_text, parts[i]));
    }
    return out;
}

std::string reply::wire() const {
    std::string out;
    for (const auto& l : lines()) {
        out += l;
        out += "\r\n";
    }
    return out;
}

}  // namespace postern::smtp
