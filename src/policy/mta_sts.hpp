// policy/mta_sts.hpp: MTA-STS (RFC 8461): the TXT record, the policy file, and which MX
// hosts a policy lists.
//
// RFC 8461 §3.1: the _mta-sts TXT record is "v=STSv1; id=<1-32 alphanumerics>;" (more
// fields allowed, in any order after v); several STSv1 records mean none. §3.2: the
// policy is "key: value" lines (CRLF or LF): version STSv1, mode enforce | testing |
// none, one or more mx (a name, or "*." and a name: one label more), max_age seconds up
// to 31557600; unknown keys are ignored. §4.1: an MX host matches a listed name exactly
// or, for "*.example.net", with exactly one label in place of the "*".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::policy {

/// The id of the one STSv1 record among `texts`; std::nullopt when there is none, more
/// than one, or it is malformed (then, per §3.1, the domain has no policy to fetch).
std::optional<std::string> sts_record_id(const std::vector<std::string>& texts);

struct sts_policy {
    enum class mode { enforce, testing, none };
    mode what = mode::none;
    std::vector<std::string> mx;                 // patterns, lower case, no trailing dot
    std::chrono::seconds max_age{0};
    /// Kept with the policy (cache): the TXT id it was fetched under, and when.
    std::string id;
    std::chrono::system_clock::time_point fetched_at{};

    bool expired(std::chrono::system_clock::time_point now) const { return now >= fetched_at + max_age; }
    /// §4.1: whether `host` (an MX name) is one the policy lists.
    bool lists(std::string_view host) const;
};

const char* to_string(sts_policy::mode m);

/// Parses a policy file; on error, `error` says why and std::nullopt comes back.
std::optional<sts_policy> parse_sts_policy(std::string_view text, std::string& error);

/// §4.1 matching of one pattern against one host name (both compared without case and
/// without a trailing dot).
bool mx_pattern_matches(std::string_view pattern, std::string_view host);

}  // namespace postern::policy
