// policy/tlsrpt_ledger.hpp: the counts a TLS-RPT report is made of (RFC 8460 §4): per
// policy domain and policy, the sessions that succeeded and the failures by result type,
// receiving MX and address, over one period.
//
// The engine records every outbound TLS outcome of an MX-routed delivery (the policy in
// force: "tlsa" when DANE applied, "sts" for an MTA-STS policy, else "no-policy-found").
// A period runs from its start until close(): what it held is handed back, and the next
// period starts at that same instant, so nothing is counted twice or lost between two.
// Counts are kept in memory and written to a JSON file (0600) by flush() (the engine
// flushes every minute and at stop): a crash loses at most the last minute's counts.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

namespace postern::policy {

using sys_time = std::chrono::system_clock::time_point;

/// One session's outcome, as the engine saw it.
struct tlsrpt_session {
    std::string policy_domain;                 // the recipient domain
    std::string policy_type;                   // "tlsa" | "sts" | "no-policy-found"
    std::vector<std::string> policy_strings;   // TLSA records, or the MTA-STS policy's lines
    std::vector<std::string> mx_patterns;      // sts: the policy's mx lines
    std::string receiving_mx;
    std::string receiving_ip;
    std::string result;                        // "" for a success, else the RFC 8460 result type
};

/// What one period held.
struct tlsrpt_period {
    sys_time start{}, end{};
    struct failure_key {
        std::string result, receiving_mx, receiving_ip;
        auto operator<=>(const failure_key&) const = default;
    };
    struct policy_counts {
        std::string type;
        std::vector<std::string> strings, mx_patterns;
        std::uint64_t successes = 0;
        std::map<failure_key, std::uint64_t> failures;
    };
    /// domain -> (type + strings) -> counts
    std::map<std::string, std::map<std::string, policy_counts>> domains;
    bool empty() const { return domains.empty(); }
};

class tlsrpt_ledger {
public:
    /// Reads `file` (missing or damaged: a new period from `now`). Empty path: memory only.
    tlsrpt_ledger(std::filesystem::path file, sys_time now);

    void record(const tlsrpt_session& session);   // thread-safe, cheap
    void flush();                                  // writes the file when something changed
    tlsrpt_period current(sys_time now) const;     // the open period so far (end = now)
    tlsrpt_period close(sys_time now);             // ends the period at `now`; the next starts there
    sys_time started() const;                      // when the open period began

private:
    void save_locked() const;

    std::filesystem::path file_;
    mutable std::mutex mutex_;
    tlsrpt_period period_;
    bool dirty_ = false;
};

/// A period as JSON (the form of data_dir/tlsrpt.json) and back; the reading throws
/// (nlohmann::json's exceptions) on a document that is not one.
nlohmann::json tlsrpt_period_json(const tlsrpt_period& period);
tlsrpt_period tlsrpt_period_from(const nlohmann::json& doc);

/// RFC 8460 §4.4: the report of one policy domain for `period`.
nlohmann::json tlsrpt_report(const tlsrpt_period& period, const std::string& domain,
                             const std::string& organization_name, const std::string& contact_info,
                             const std::string& report_id);

}  // namespace postern::policy
