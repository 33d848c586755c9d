// policy/state_file.hpp: the small JSON files the policy room keeps in data_dir (the
// MTA-STS cache, the downgrade memory, the TLS-RPT counts): read whole, written whole
// (files::replace_file, 0600, owner kept so root and the service user can share them).
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace postern::policy {

/// The file's JSON; std::nullopt when the path is empty or the file does not exist. A
/// file that does not parse is logged as `what` and read as absent.
std::optional<nlohmann::json> read_state_file(const std::filesystem::path& file, std::string_view what);
/// Replaces the file with `doc`; a failure is logged as `what` (the state stays in memory).
void write_state_file(const std::filesystem::path& file, const nlohmann::json& doc, std::string_view what);

/// "2026-12-03T12:00:00Z".
std::string iso_utc(std::chrono::system_clock::time_point t);

}  // namespace postern::policy
