// daemon/route_query.hpp: `postern route ADDRESS` — where one address goes, and why.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "config/schema.hpp"

namespace postern::daemon {

/// {"address", "accepted": bool, "domain_type": "authoritative" | "internal_relay" | "",
///  "recipient": "known" | "unknown" | "" (authoritative domains), "connector": NAME or "",
///  "why": reason}, for `cfg` as loaded.
nlohmann::json describe_route(const config::configuration& cfg, const std::string& address);

/// The lines `postern route` prints for such a description.
std::string route_text(const nlohmann::json& route);

}  // namespace postern::daemon
