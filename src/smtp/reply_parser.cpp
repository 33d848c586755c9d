// smtp/reply_parser.cpp: reply lines to smtp::reply (see reply_parser.hpp).
#include "smtp/reply_parser.hpp"

#include <fmt/format.h>

namespace postern::smtp {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// "2.1.5 " at the start of a reply line (RFC 2034 §4): returns the code and its length.
std::optional<std::pair<smtp::enhanced_code, std::size_t>> leading_status(std::string_view text, char klass) {
    if (text.size() < 6 || text[0] != klass || text[1] != '.') return std::nullopt;
    std::size_t i = 2;
    unsigned subject = 0, detail = 0;
    auto number = [&](unsigned& value) {
        const std::size_t start = i;
        while (i < text.size() && is_digit(text[i]) && i - start < 3) value = value * 10 + (text[i++] - '0');
        return i > start;
    };
    if (!number(subject) || i >= text.size() || text[i] != '.') return std::nullopt;
    ++i;
    if (!number(detail)) return std::nullopt;
    if (i < text.size() && text[i] != ' ') return std::nullopt;
    const std::size_t length = i < text.size() ? i + 1 : i;
    return std::pair{smtp::enhanced_code{static_cast<std::uint8_t>(klass - '0'), static_cast<std::uint16_t>(subject),
                                         static_cast<std::uint16_t>(detail)},
                     length};
}

}  // namespace

std::optional<smtp::reply> parse_reply_lines(const std::vector<std::string>& lines, std::string* error) {
    auto bad = [&](std::string why) -> std::optional<smtp::reply> {
        if (error) *error = std::move(why);
        return std::nullopt;
    };
    if (lines.empty()) return bad("empty reply");
    smtp::reply r;
    std::string text;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
            return bad("reply line without a 3-digit code: \"" + line.substr(0, 40) + "\"");
        const auto code = static_cast<std::uint16_t>((line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0'));
        if (line[0] < '2' || line[0] > '5') return bad(fmt::format("reply code {} out of range", code));
        const bool last = i + 1 == lines.size();
        if (line.size() > 3 && line[3] != (last ? ' ' : '-'))
            return bad("reply line with a bad separator: \"" + line.substr(0, 40) + "\"");
        if (i == 0) r.code = code;
        else if (code != r.code) return bad(fmt::format("multi-line reply mixes codes {} and {}", r.code, code));
        std::string_view body = line.size() > 4 ? std::string_view(line).substr(4) : std::string_view{};
        if (auto st = leading_status(body, line[0])) {
            if (i == 0) r.status = st->first;
            if (st->first == r.status) body.remove_prefix(st->second);
        }
        if (i) text += '\n';
        text += body;
    }
    r.text = std::move(text);
    return r;
}

reply_parser::status reply_parser::next(smtp::reply& out, std::string* error) {
    for (;;) {
        const auto nl = buffer_.find('\n');
        if (nl == std::string::npos) {
            if (buffer_.size() > max_line) {
                if (error) *error = "reply line longer than " + std::to_string(max_line) + " octets";
                return status::malformed;
            }
            return status::need_more;
        }
        if (nl > max_line) {
            if (error) *error = "reply line longer than " + std::to_string(max_line) + " octets";
            return status::malformed;
        }
        // A bare LF ends a line too: being lenient here cannot smuggle anything, since
        // replies are never relayed.
        std::string line = buffer_.substr(0, nl > 0 && buffer_[nl - 1] == '\r' ? nl - 1 : nl);
        buffer_.erase(0, nl + 1);
        const bool last = line.size() <= 3 || line[3] != '-';
        lines_.push_back(std::move(line));
        if (!last) {
            if (lines_.size() > max_lines) {
                if (error) *error = "reply with more than " + std::to_string(max_lines) + " lines";
                return status::malformed;
            }
            continue;
        }
        auto parsed = parse_reply_lines(lines_, error);
        lines_.clear();
        if (!parsed) return status::malformed;
        out = std::move(*parsed);
        return status::complete;
    }
}

bool reply_parser::complete_reply_buffered() const {
    std::size_t pos = 0;
    while (pos < buffer_.size()) {
        const auto nl = buffer_.find('\n', pos);
        if (nl == std::string::npos) return false;
        const std::string_view line(buffer_.data() + pos, nl - pos);
        if (line.size() <= 3 || line[3] != '-') return true;
        pos = nl + 1;
    }
    return false;
}

}  // namespace postern::smtp
