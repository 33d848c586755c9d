// smtp/envelope.hpp: the envelope vocabulary — what a transaction hands over besides the
// body (RFC 5321 §2.3.1, with the RFC 3461 DSN parameters), and the per-recipient state the
// queue stores with it (queue/envelope_codec.hpp is its on-disk form).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace postern::smtp {

using sys_time = std::chrono::system_clock::time_point;

enum class recipient_state : std::uint8_t { pending, delivered, failed };

struct recipient {
    std::string address;                 // as given in RCPT TO, without <>
    std::string orcpt;                   // ORCPT= parameter when given (RFC 3461)
    std::string notify;                  // NOTIFY= as received, upper case ("NEVER", "SUCCESS,DELAY"); "" = absent
    recipient_state state = recipient_state::pending;
    std::uint32_t attempts = 0;
    sys_time next_attempt{};
    std::string last_reply;              // the next hop's reply or our reason, for DSN and queue show
    std::string last_tls;                // the last attempt's TLS verdict word (DESIGN §6: dane-ee, pkix, ...)
};

/// receive_connector of a TLS-RPT report Postern wrote itself (tlsrpt/sender.hpp): it goes
/// out whatever the TLS (TLS-Required: No), its own sessions are not counted for TLS-RPT,
/// and its failure is never reported to anyone.
inline constexpr std::string_view tls_report_origin = "tls-report";

/// The envelope: everything about a message but its body.
struct envelope {
    std::string id;                      // queue id, assigned by the store at commit
    std::string mail_from;               // reverse path without <>; "" = null sender
    std::vector<recipient> recipients;
    bool body_8bit = false;              // BODY=8BITMIME
    bool smtputf8 = false;               // SMTPUTF8
    bool requiretls = false;             // REQUIRETLS (RFC 8689): only over verified TLS, or returned
    bool tls_optional = false;           // a "TLS-Required: No" header (RFC 8689 §5): DANE failures do not hold it
    std::string envid;                   // ENVID= (RFC 3461)
    std::string ret;                     // RET=FULL|HDRS
    std::string client_address;          // "IP:port" of the client that handed it to us
    std::string client_helo;
    std::string receive_connector;
    std::string session_id;              // the protocol-log session that received it
    sys_time received_at{};
    bool delay_notice_sent = false;
    /// Set by `postern queue hold`, cleared by `release`: delivery never attempts a held
    /// message (delivery/scheduler.hpp).
    bool held = false;
    /// Octets of the body, set by the store at commit (0 in records written before the
    /// field existed: then the body's own size is the answer).
    std::uint64_t body_size = 0;
    /// The body is a file of its own (queue/store.hpp body_spool: large messages), not a
    /// record in the store. Set by the store at commit.
    bool body_in_file = false;
};

}  // namespace postern::smtp
