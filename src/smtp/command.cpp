// smtp/command.cpp: command line assembly and verb parsing (RFC 5321 §2.3.8, §4.1.1).
#include "smtp/command.hpp"

#include <algorithm>
#include <cctype>

namespace postern::smtp {

void line_reader::feed(std::string_view bytes) {
    // Compact lazily so a long pipeline does not grow the buffer without bound.
    if (start_ > 0 && start_ * 2 >= buffer_.size()) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    if (!discarding_) {
        buffer_.append(bytes);
        return;
    }
    // Inside an overlong line: keep nothing up to its LF.
    auto lf = bytes.find('\n');
    if (lf == std::string_view::npos) return;
    buffer_.append(bytes.substr(lf));       // the LF ends the discarded line in next()
}

std::optional<line> line_reader::next() {
    std::string_view pending(buffer_.data() + start_, buffer_.size() - start_);
    if (discarding_) {
        if (pending.empty() || pending.front() != '\n') {
            // feed() keeps nothing but the ending LF while discarding.
            buffer_.erase(start_);
            scanned_ = 0;
            return std::nullopt;
        }
        discarding_ = false;
        ++start_;
        scanned_ = 0;
        return line{line::status::too_long, {}};
    }
    auto lf = pending.find('\n', scanned_);
    if (lf == std::string_view::npos) {
        if (pending.size() >= max_line) {
            // Over the limit without an end: forget it and drop everything up to the LF.
            buffer_.erase(start_);
            scanned_ = 0;
            discarding_ = true;
            return std::nullopt;
        }
        scanned_ = pending.size();
        return std::nullopt;
    }
    std::string_view text = pending.substr(0, lf);
    start_ += lf + 1;
    scanned_ = 0;
    if (lf + 1 > max_line) return line{line::status::too_long, {}};
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.find('\0') != std::string_view::npos) return line{line::status::nul, {}};
    return line{line::status::ok, std::string(text)};
}

std::string line_reader::take_rest() {
    std::string rest = discarding_ ? std::string() : buffer_.substr(start_);
    buffer_.clear();
    start_ = 0;
    scanned_ = 0;
    discarding_ = false;
    return rest;
}

std::optional<command> parse_command(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size() && i <= 20 && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    if (i == 0 || i > 20) return std::nullopt;
    if (i < text.size() && text[i] != ' ') return std::nullopt;
    command c;
    c.verb.reserve(i);
    for (std::size_t k = 0; k < i; ++k)
        c.verb.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(text[k]))));
    std::string_view arg = text.substr(i);
    while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
    // Trailing white space is common from hand-typed sessions and means nothing.
    while (!arg.empty() && (arg.back() == ' ' || arg.back() == '\t')) arg.remove_suffix(1);
    c.argument = std::string(arg);
    return c;
}

std::string redact_for_log(std::string_view text) {
    // RFC 4954: "AUTH mechanism [initial-response]"; the response carries credentials.
    auto starts_auth = text.size() >= 4 &&
                       std::equal(text.begin(), text.begin() + 4, "AUTH", [](char a, char b) {
                           return std::toupper(static_cast<unsigned char>(a)) == b;
                       }) &&
                       (text.size() == 4 || text[4] == ' ');
    if (!starts_auth) return std::string(text);
    std::string_view rest = text.substr(4);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    auto sp = rest.find(' ');
    if (sp == std::string_view::npos) return std::string(text);   // mechanism only
    return std::string(text.substr(0, text.size() - rest.size())) + std::string(rest.substr(0, sp)) +
           " <secret>";
}

}  // namespace postern::smtp
