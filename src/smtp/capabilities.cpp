// smtp/capabilities.cpp: EHLO keywords to capabilities (see capabilities.hpp).
#include "smtp/capabilities.hpp"

#include <cctype>
#include <charconv>
#include <string>
#include <string_view>

namespace postern::smtp {

namespace {

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

}  // namespace

capabilities parse_ehlo(const smtp::reply& reply) {
    capabilities caps;
    caps.esmtp = reply.code == 250;
    std::string_view rest = reply.text;
    bool first = true;
    while (!rest.empty() || first) {
        const auto nl = rest.find('\n');
        const std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        if (first) {          // the first line names the server (RFC 5321 §4.1.1.1)
            first = false;
            continue;
        }
        const auto space = line.find(' ');
        const std::string keyword = upper(line.substr(0, space));
        const std::string_view param = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
        if (keyword == "STARTTLS") caps.starttls = true;
        else if (keyword == "PIPELINING") caps.pipelining = true;
        else if (keyword == "8BITMIME") caps.eightbitmime = true;
        else if (keyword == "SMTPUTF8") caps.smtputf8 = true;
        else if (keyword == "REQUIRETLS") caps.requiretls = true;
        else if (keyword == "ENHANCEDSTATUSCODES") caps.enhanced_status_codes = true;
        else if (keyword == "DSN") caps.dsn = true;
        else if (keyword == "SIZE") {
            caps.size = true;
            std::uint64_t limit = 0;
            auto [p, ec] = std::from_chars(param.data(), param.data() + param.size(), limit);
            caps.size_limit = ec == std::errc() ? limit : 0;   // RFC 1870 §4: 0 or absent = no limit
        }
    }
    return caps;
}

}  // namespace postern::smtp
