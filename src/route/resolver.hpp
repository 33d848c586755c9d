// route/resolver.hpp: next hops for a recipient domain, by DNS through libunbound.
//
// The MX rules of DESIGN.md §3: MX in preference order; A/AAAA fallback only when the MX
// answer is NODATA; SERVFAIL, a bogus answer or a timeout defers; null MX (RFC 7505)
// bounces with 556 5.1.10; MX hosts at or above our own preference are dropped, and if
// none are left the message defers ("mail loops back to myself").
// The DNSSEC status of every answer is kept, because domain validation may trust an MX
// host name only when the MX answer was DNSSEC-validated.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "config/schema.hpp"
#include "route/dns_records.hpp"

namespace postern::route {

enum class dnssec { insecure, secure, bogus };

struct host {
    std::string name;                          // MX exchange, or the domain itself (A/AAAA fallback)
    std::uint16_t preference = 0;
    std::vector<boost::asio::ip::address> addresses;   // A then AAAA, as answered
    dnssec address_status = dnssec::insecure;
    /// The name the address lookup reached through CNAME records (RFC 7672 §2.2.2: the
    /// TLSA base domain when that expansion is secure); "" when `name` is no alias.
    std::string canonical_name;
};

enum class lookup_status {
    ok,                 // hosts non-empty
    null_mx,            // permanent: 556 5.1.10
    no_such_domain,     // NXDOMAIN: permanent, 550 5.1.2
    defer,              // SERVFAIL, bogus, timeout, loops to myself, no addresses: transient
};

struct next_hops {
    lookup_status status = lookup_status::defer;
    std::vector<host> hosts;                   // in the order to try them
    dnssec mx_status = dnssec::insecure;       // of the MX answer (secure: MX names count for DV)
    bool from_mx = false;                      // false: A/AAAA fallback on NODATA
    std::string reason;                        // for logs and DSNs: "SERVFAIL for example.test MX"
};

/// The TLSA records of one host and port (RFC 7672 §2.2: _PORT._tcp.HOST), as validated.
struct tlsa_answer {
    enum class kind {
        records,        // the records are in `records` (which may hold only unusable ones)
        none,           // NXDOMAIN or NODATA: the host publishes no TLSA
        failed,         // SERVFAIL, a timeout or any other failure: nothing is known
        bogus,          // the answer failed DNSSEC validation
    };
    kind what = kind::failed;
    dnssec status = dnssec::insecure;          // of the answer (or of the denial)
    std::vector<tlsa_record> records;
    std::string reason;                        // for logs: "SERVFAIL for _25._tcp.mx.example TLSA"
};

/// The TXT records of one name, each record's strings joined (RFC 8461 §3.1).
struct txt_answer {
    enum class kind { records, none, failed };   // failed: SERVFAIL, bogus, timeout
    kind what = kind::failed;
    dnssec status = dnssec::insecure;
    std::vector<std::string> texts;
    std::string reason;
};

struct resolver_options {
    /// Bound on one resolve() or resolve_host() call, every query included: what is still
    /// unanswered then counts as a timeout (and defers, unless some MX host has addresses).
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
};

class resolver {
public:
    /// Uses [dns] resolver (forward only to that address) or unbound_config, else the
    /// system's resolv.conf and hosts file without DNSSEC validation (a forwarder that
    /// strips DNSSEC would make every answer bogus); unbound_config, naming a trust
    /// anchor, switches validation on. Except with unbound_config (which says everything itself), the
    /// special-use "test." zone is made transparent so that test domains resolve.
    /// Throws std::runtime_error on a bad setting. Rules: route/mx_rules.hpp.
    explicit resolver(const config::dns_section& dns, resolver_options options = {});
    virtual ~resolver();

    /// Thread-safe, asynchronous; `done` is called once, from a resolver thread.
    /// `own_names` are our own host names (to drop MX at or above our own preference).
    virtual void resolve(const std::string& domain, const std::vector<std::string>& own_names,
                         std::function<void(next_hops)> done);

    /// Address records only (for smart hosts given by name).
    virtual void resolve_host(const std::string& name, std::function<void(host, std::string error)> done);

    /// TLSA records of _PORT._tcp.HOST (DANE, RFC 7672), with their DNSSEC status.
    virtual void resolve_tlsa(const std::string& host, std::uint16_t port, std::function<void(tlsa_answer)> done);

    /// TXT records of `name` (MTA-STS's _mta-sts.DOMAIN, RFC 8461 §3.1).
    virtual void resolve_txt(const std::string& name, std::function<void(txt_answer)> done);

protected:
    resolver() = default;                      // for test doubles

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// The send connector whose address_spaces match `domain` most specifically: exact name,
/// then the longest "*.suffix", then "*". Null when none matches.
const config::send_connector* choose_send_connector(const config::configuration& cfg,
                                                    const std::string& domain);

/// Which send connector one recipient takes, and why (DESIGN §3 recipients): the first
/// connector in the file whose recipients list has the address or whose recipients_ldap
/// directory finds it, else the domain's address_spaces match. `connector` is null when
/// nothing routes it, or when a directory has not answered yet (`undecided`): without
/// `wait`, a directory miss starts a search and the recipient is decided at a later scan.
struct route_choice {
    const config::send_connector* connector = nullptr;
    std::string why;   // "listed in FILE", "address space \"corp.test\" (exact domain)", ...
    bool undecided = false;
};
enum class directory_wait { no, yes };
route_choice choose_route(const config::configuration& cfg, const std::string& address,
                          directory_wait wait = directory_wait::no);

}  // namespace postern::route
