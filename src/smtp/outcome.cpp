// smtp/outcome.cpp: printing an outcome for logs, queue show and DSNs.
#include "smtp/outcome.hpp"

#include <fmt/format.h>

namespace postern::smtp {

std::string recipient_result::describe() const {
    std::string text;
    if (remote) {
        // One line: DSNs and the queue listing want the reply, not its layout.
        text = fmt::format("{}", remote->code);
        if (!remote->status.empty()) text += fmt::format(" {}", remote->status.to_string());
        std::string body = remote->text;
        for (auto& c : body)
            if (c == '\n') c = ' ';
        if (!body.empty()) text += " " + body;
        if (!reason.empty()) text += " (" + reason + ")";
    } else {
        text = reason;
    }
    if (!host.empty()) text = host + ": " + text;
    return text;
}

smtp::enhanced_code dsn_status(const recipient_result& r) {
    if (r.remote && !r.remote->status.empty()) return r.remote->status;
    if (!r.status.empty()) return r.status;
    if (r.remote) return {static_cast<std::uint8_t>(r.remote->code / 100), 0, 0};
    switch (r.what) {
    case verdict::delivered: return {2, 0, 0};
    case verdict::transient: return {4, 4, 1};   // RFC 3463: no answer from host / routing
    case verdict::permanent: return {5, 0, 0};
    }
    return {5, 0, 0};
}

}  // namespace postern::smtp
