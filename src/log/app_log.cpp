// log/app_log.cpp: server log set-up and secret masking.
#include "log/app_log.hpp"

#include <cctype>

#include <spdlog/sinks/stdout_sinks.h>

#include "log/protocol_log.hpp"

namespace postern::log {

namespace {

bool starts_with_word(std::string_view line, std::string_view word) {
    if (line.size() < word.size()) return false;
    for (std::size_t i = 0; i < word.size(); ++i)
        if (std::toupper(static_cast<unsigned char>(line[i])) != word[i]) return false;
    return line.size() == word.size() || line[word.size()] == ' ';
}

}  // namespace

void init_app_log(std::string_view level) {
    spdlog::drop("postern");   // init may run again, e.g. after a reload changes the level
    auto logger = spdlog::stderr_logger_mt("postern");
    // UTC with milliseconds, like the protocol log, so the two can be read side by side.
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
    auto parsed = spdlog::level::from_str(std::string(level));
    logger->set_level(parsed == spdlog::level::off && level != "off" ? spdlog::level::info : parsed);
    spdlog::set_default_logger(std::move(logger));
}

std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    append_escaped(out, text, /*double_quotes=*/false);
    return out;
}

std::string redact_smtp_line(std::string_view line) {
    // RFC 4954 §4: AUTH mechanism [initial-response]
    if (!starts_with_word(line, "AUTH")) return std::string(line);
    std::size_t mechanism = line.find_first_not_of(' ', 4);
    if (mechanism == std::string_view::npos) return std::string(line);
    std::size_t end = line.find(' ', mechanism);
    if (end == std::string_view::npos) return std::string(line);   // no initial response
    return std::string(line.substr(0, end)) + " " + std::string(secret_placeholder);
}

std::string auth_redactor::client_line(std::string_view line) {
    if (in_auth_) return std::string(secret_placeholder);   // a response to a 334 challenge
    if (starts_with_word(line, "AUTH")) in_auth_ = true;
    return redact_smtp_line(line);
}

void auth_redactor::server_line(std::string_view line) {
    // Only 334 continues the exchange (RFC 4954 §4); any other reply ends it.
    if (line.substr(0, 3) != "334") in_auth_ = false;
}

void io_tracer::feed(std::string_view bytes, bool incoming) {
    constexpr std::size_t longest = 4096;
    auto& partial = incoming ? partial_in_ : partial_out_;
    partial.append(bytes.substr(0, partial.size() < longest + 2 ? longest + 2 - partial.size() : 0));
    std::size_t start = 0;
    for (std::size_t end; (end = partial.find("\r\n", start)) != std::string::npos; start = end + 2)
        emit(std::string_view(partial).substr(start, end - start), incoming, false);
    partial.erase(0, start);
    if (partial.size() > longest) {
        emit(std::string_view(partial).substr(0, longest), incoming, true);
        partial.clear();
    }
}

void io_tracer::emit(std::string_view line, bool incoming, bool cut) {
    // The client's lines may carry AUTH secrets; the server's replies tell when an
    // exchange ends.
    const bool client_line = incoming == server_;
    std::string text = client_line ? redactor_.client_line(line) : std::string(line);
    if (!client_line) redactor_.server_line(line);
    spdlog::info("smtp-io {} {} {}{}", label_, incoming ? "<" : ">", printable(text), cut ? " (line cut at 4096 octets)" : "");
}

}  // namespace postern::log
