// delivery/scheduler.hpp: what to send where and what a result means for the queue.
//
// Standards: RFC 5321 §4.5.4.1 (retry strategy: retry intervals, give up after days),
// §4.5.3.1.10 (452 to RCPT: the rest in a new transaction), RFC 3464 (DSN), RFC 3461 §6.2
// (never a DSN to a null sender), RFC 3461 §4 (NOTIFY, ORCPT, RET and ENVID carried to the
// next hop; NOTIFY decides which notices a recipient gets).
//
// Pure functions over envelopes and times: no clock, no store, no network, so every
// decision is a unit test. The engine (engine.cpp) does the I/O around them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/schema.hpp"
#include "delivery/protocol_terms.hpp"
#include "delivery/dsn.hpp"
#include "smtp/envelope.hpp"

namespace postern::delivery {

/// A next hop as the scheduler sees it: the send connector, and for MX routing the
/// recipient domain (smart hosts take every domain of the connector on one connection).
/// What a message asks of TLS beyond the connector (RFC 8689): messages that differ here
/// never share a connection, so none travels on one whose verdict it would not accept.
enum class tls_demand : std::uint8_t {
    usual,          // the connector's rules, raised by published policy (DANE)
    requiretls,     // REQUIRETLS: a verified path to a hop that offers REQUIRETLS, or returned
    optional,       // "TLS-Required: No": published policy is not enforced for it
    report,         // a TLS-RPT report of ours: as optional, and its sessions are not counted
};

/// DANE, MTA-STS and downgrade memory are not enforced for the message (RFC 8689 §5).
inline bool waives_published_policy(tls_demand t) { return t == tls_demand::optional || t == tls_demand::report; }

struct destination {
    std::string connector;
    std::string domain;              // "" when smart hosts take every domain on one connection
    tls_demand tls = tls_demand::usual;
    auto operator<=>(const destination&) const = default;
    std::string to_string() const {
        std::string s = domain.empty() ? connector : connector + "/" + domain;
        if (tls == tls_demand::requiretls) s += " (REQUIRETLS)";
        else if (tls == tls_demand::optional) s += " (TLS-Required: No)";
        else if (tls == tls_demand::report) s += " (TLS report)";
        return s;
    }
};

/// One message's recipients for one destination: they go in one transaction.
struct job {
    std::string message_id;
    destination where;
    std::vector<std::size_t> recipients;   // indices into envelope.recipients
    std::uint64_t body_size = 0;           // for the engine's count of bytes waiting to go out
};

/// A recipient no connector routes: bounced at once.
struct unroutable_recipient {
    std::string message_id;
    std::size_t recipient;
    std::string reason;
};

struct plan {
    std::vector<job> jobs;
    std::vector<unroutable_recipient> unroutable;
};

/// Groups the pending recipients of `env` that are due at `now` and not `busy` by
/// destination, in recipient order (RFC 5321 §4.5.4.1: one transaction per next hop).
/// A held message (`postern queue hold`) gives an empty plan.
plan plan_message(const config::configuration& cfg, const smtp::envelope& env, smtp::sys_time now,
                  const std::function<bool(std::size_t)>& busy = {});

/// When `env` next needs the engine: the earliest next_attempt of a pending recipient that
/// is not `busy`, or the time its delay notice falls due, whichever comes first. Empty when
/// nothing is left to do (every recipient done or busy) or the message is held (released
/// messages come back through a full scan). The engine keeps an index of these times
/// instead of reading the whole queue every second.
std::optional<smtp::sys_time> next_due(const smtp::envelope& env, const config::queue_section& queue,
                                        const std::function<bool(std::size_t)>& busy = {});

/// What one recipient's result does to the queue.
enum class decision { done, retry, bounce };

/// Applies `result` to `rcpt`: counts the attempt, keeps the reply, and sets the next
/// attempt time with jitter (queue/retry.hpp). A transient result past [queue] expire is
/// a bounce; the reason then says so. The state only changes to delivered here; a bounce
/// turns into failed in the same store write that queues its DSN (engine.cpp).
decision apply_result(smtp::recipient& rcpt, const recipient_result& result, const smtp::envelope& env,
                      const config::queue_section& queue, smtp::sys_time now);

/// True when a delay notice is due: not sent yet, queued for delay_notice or longer,
/// some recipient still pending that was tried and whose NOTIFY asks for delay notices
/// (wants_notice, RFC 3461 §4.1), and a sender to tell (not the null sender).
bool delay_notice_due(const smtp::envelope& env, const config::queue_section& queue, smtp::sys_time now);

/// What a delay notice reports: every pending recipient whose NOTIFY asks for delay
/// notices, with status 4.4.7 and its last reply ("not yet delivered" before any).
std::vector<dsn_recipient> delay_notice_recipients(const smtp::envelope& env);

/// The transaction that carries `env`'s recipients at `which` (indices into
/// env.recipients, in that order) with `body`: sender, BODY/SMTPUTF8, and the RFC 3461
/// parameters as received (RET, ENVID; NOTIFY and ORCPT per recipient). A recipient that
/// came without ORCPT gets "rfc822;" and its address in xtext when the address is ASCII
/// (RFC 3461 §4.2: a relay may add it, with the address it received). The client sends
/// them only when the next hop advertises DSN.
transaction transaction_for(const smtp::envelope& env, const std::vector<std::size_t>& which, std::string body);

/// True when nothing is left to do: every recipient delivered or failed.
bool finished(const smtp::envelope& env);

/// Per-message jitter seed, so a queue full of messages does not retry in lockstep.
std::uint32_t jitter_seed(const std::string& message_id);

/// The domain of an address (after the last '@'), lower-cased.
std::string recipient_domain(const std::string& address);

}  // namespace postern::delivery
