// daemon/policy_operations.hpp: `postern policy` (DESIGN §4): the downgrade memory shown,
// reported and forgotten, by the running server (control socket command "policy") or,
// when none runs, on data_dir/downgrade.json directly.
//
// Requests: {"command": "policy", "action": "show", "domain": D} |
// {"action": "forget", "domain": D, "dry_run": bool} | {"action": "report"}.
// Data: show: {"domain", "verdict", "mx", "first_seen", "last_seen", "expires", "events":
// [{"when", "mx", "verdict", "action"}]} or null; report: {"domains": [entry...]} of the
// entries with events (what enforcement held, or would have held); forget: the entry it
// removed (or would remove, with dry_run).
#pragma once

#include <chrono>

#include <nlohmann/json.hpp>

#include "daemon/queue_operations.hpp"
#include "policy/downgrade_memory.hpp"
#include "policy/tlsrpt_ledger.hpp"
#include "tlsrpt/sender.hpp"

namespace postern::daemon {

queue_result handle_policy_request(policy::downgrade_memory& memory, const nlohmann::json& request,
                                   std::chrono::system_clock::time_point now);

/// The text form of a reply's data for `action`.
std::string policy_text(const std::string& action, const nlohmann::json& data);

/// `postern tlsrpt show [DOMAIN]` ({"command": "tlsrpt", "action": "show", "domain"}): the
/// open period's counts as RFC 8460 reports, one per policy domain: {"start", "end",
/// "reports": [report...]}. `organization` names the reporting organization.
queue_result handle_tlsrpt_request(policy::tlsrpt_ledger& ledger, const nlohmann::json& request,
                                   std::chrono::system_clock::time_point now, const std::string& organization);
std::string tlsrpt_text(const nlohmann::json& data);

/// `postern tlsrpt send`: {"outcomes": [{"domain", "destination", "ok", "detail"}...]}.
nlohmann::json tlsrpt_outcomes_json(const std::vector<tlsrpt::outcome>& outcomes);
std::string tlsrpt_send_text(const nlohmann::json& data);

}  // namespace postern::daemon
