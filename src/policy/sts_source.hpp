// policy/sts_source.hpp: the MTA-STS policy of a recipient domain at the moment of
// a delivery (RFC 8461 §3, §5.1), from the cache or fetched.
//
// The _mta-sts TXT record is asked every time (cheap, cached by libunbound); the policy
// is fetched from https://mta-sts.DOMAIN/.well-known/mta-sts.txt when nothing is cached,
// when the record's id differs from the cached policy's, or when half its max_age has
// passed. A failed fetch keeps a cached policy until it expires; without one the domain
// has no policy for this delivery, and the failure is said (RFC 8460 result type). The
// policy host is resolved through [dns] like every other name Postern looks up, and asked
// on [dns] mta_sts_port (443).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <openssl/ssl.h>

#include <boost/asio/awaitable.hpp>

#include "policy/mta_sts.hpp"
#include "route/next_hop_source.hpp"
#include "policy/sts_store.hpp"

namespace postern::policy {

/// What MTA-STS says about one domain for this delivery.
struct sts_view {
    std::optional<sts_policy> policy;   // in force (not expired); none when the domain has none
    std::string problem;                        // a fetch or parse failure, for the verdict line
    std::string result;                         // its RFC 8460 result type (sts-policy-fetch-error, ...)
    bool enforce() const { return policy && policy->what == sts_policy::mode::enforce; }
    bool testing() const { return policy && policy->what == sts_policy::mode::testing; }
};

class mta_sts_source {
public:
    /// `cache_file`: where policies are kept across restarts (data_dir/mta-sts.json).
    explicit mta_sts_source(std::filesystem::path cache_file) : store_(std::move(cache_file)) {}

    /// `https`: the TLS client context that verifies policy hosts (system store and the
    /// key ring's roots).
    boost::asio::awaitable<sts_view> lookup(route::next_hop_source& dns, const std::string& domain, std::uint16_t port,
                                            std::shared_ptr<SSL_CTX> https);

private:
    boost::asio::awaitable<std::optional<sts_policy>> fetch(route::next_hop_source& dns, const std::string& domain,
                                                                    std::uint16_t port, std::shared_ptr<SSL_CTX> https,
                                                                    sts_view& view);
    sts_store store_;
    /// A fetch that failed is not tried again for a few minutes (per domain), so a busy
    /// destination does not ask a broken policy host at every connection.
    struct failed_fetch { std::chrono::steady_clock::time_point until; std::string problem, result; };
    std::mutex failures_mutex_;
    std::map<std::string, failed_fetch> failures_;
};

}  // namespace postern::policy
