// policy/state_file.cpp: see state_file.hpp.
#include "policy/state_file.hpp"

#include <ctime>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "files/replace.hpp"

namespace postern::policy {

std::optional<nlohmann::json> read_state_file(const std::filesystem::path& file, std::string_view what) {
    if (file.empty()) return std::nullopt;
    std::ifstream in(file);
    if (!in) return std::nullopt;
    std::stringstream text;
    text << in.rdbuf();
    try {
        return nlohmann::json::parse(text.str());
    } catch (const std::exception& e) {
        spdlog::warn("{}: {} is damaged ({}); starting from nothing", what, file.string(), e.what());
        return std::nullopt;
    }
}

void write_state_file(const std::filesystem::path& file, const nlohmann::json& doc, std::string_view what) {
    if (file.empty()) return;
    try {
        files::replace_file(file, doc.dump(1), {.mode = 0600, .keep_owner = true});
    } catch (const std::exception& e) {
        spdlog::warn("{}: cannot save {}: {}", what, file.string(), e.what());
    }
}

std::string iso_utc(std::chrono::system_clock::time_point t) {
    const auto seconds = std::chrono::system_clock::to_time_t(t);
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return buf;
}

}  // namespace postern::policy
