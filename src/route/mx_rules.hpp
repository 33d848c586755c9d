// route/mx_rules.hpp: the MX rules of DESIGN.md §3 as pure functions over parsed answers.
//
// The resolver asks DNS in two rounds: MX for the domain, then A and AAAA for the hosts
// the MX answer names (or for the domain itself when there is no MX). plan_from_mx()
// decides what the first round means, hops_from_addresses() what both rounds mean
// together. Neither does I/O nor reads a clock, so every rule is tested without DNS.
//
// Standards: RFC 5321 §5.1 (MX order, random order among equal preferences, the
// implicit MX when there is none, dropping MX at or above our own preference);
// RFC 7505 (null MX); RFC 4035 §4.3 (secure, insecure, bogus).
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "route/dns_records.hpp"
#include "route/resolver.hpp"

namespace postern::route {

/// What one DNS question came back with.
enum class answer_kind {
    data,        // NOERROR with records
    nodata,      // NOERROR, the name exists, no records of that type
    nxdomain,    // the name does not exist
    failed,      // SERVFAIL, REFUSED, any other rcode, or a libunbound error
    bogus,       // DNSSEC validation failed (rcode may well be NOERROR)
    timed_out,   // no answer within the time allowed
};

struct answer_outcome {
    answer_kind kind = answer_kind::failed;
    dnssec status = dnssec::insecure;   // secure only when validated, bogus with kind bogus
    std::string detail;                 // "SERVFAIL", the validator's reason, an error text
};

struct mx_answer {
    answer_outcome outcome;
    std::vector<mx_record> records;
};

struct address_answer {
    answer_outcome outcome;
    std::vector<boost::asio::ip::address> addresses;
    std::string canonical;   // the name a CNAME chain led to (lower case, no trailing dot); "" when none
};

struct host_to_resolve {
    std::string name;
    std::uint16_t preference = 0;
};

/// The result of the first round: either a decision, or the hosts whose addresses the
/// second round must look up (in the order to try them).
struct mx_plan {
    std::optional<next_hops> decided;
    std::vector<host_to_resolve> hosts;
    bool from_mx = false;
    dnssec mx_status = dnssec::insecure;
    std::vector<std::string> skipped;   // MX records not used, each with its reason
};

/// Both answers for one host of the plan.
struct host_answers {
    address_answer a;
    address_answer aaaa;
};

/// "SERVFAIL for example.test MX", "timeout for mx1.example.test AAAA", ...
std::string describe_failure(const answer_outcome& outcome, std::string_view name, std::string_view type);

/// True for an MX exchange written as an IPv4 address ("192.0.2.1."): RFC 5321 §5.1
/// wants a host name there, and such a name does not resolve to that address.
bool is_address_literal_name(std::string_view name);

/// At most this many MX hosts are looked up and tried, the best first. A domain with
/// hundreds of MX records must not cost hundreds of queries per message (Postfix bounds
/// the same with smtp_mx_address_limit).
constexpr std::size_t max_mx_hosts = 10;

/// First round. `tie_order` shuffles MX records of equal preference (RFC 5321 §5.1:
/// "randomized to spread the load"); tests pass a seeded engine.
mx_plan plan_from_mx(std::string_view domain, const mx_answer& mx,
                     const std::vector<std::string>& own_names, std::mt19937& tie_order);

/// Second round: `answers[i]` belongs to `plan.hosts[i]`. A host whose lookups gave no
/// usable address is skipped; when no host is left the result defers.
next_hops hops_from_addresses(std::string_view domain, const mx_plan& plan,
                              const std::vector<host_answers>& answers);

}  // namespace postern::route
