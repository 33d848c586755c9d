// smtp/outcome.hpp: what one delivery attempt means for one recipient (STYLE E7).
//
// Three ways only, so the scheduler's decision is one switch: delivered (done), transient
// (retry until [queue] expire, then bounce), permanent (bounce now). The next hop's own
// reply is kept verbatim when there was one; `reason` is ours (a TLS verdict, a DNS
// answer, a capability the next hop lacks) and goes to the log and the DSN.
#pragma once

#include <optional>
#include <string>

#include "smtp/reply.hpp"

namespace postern::smtp {

enum class verdict { delivered, transient, permanent };

struct recipient_result {
    std::string recipient;
    verdict what = verdict::transient;
    std::optional<smtp::reply> remote;   // their reply, verbatim, when there was one
    std::string reason;                  // ours: "tls: certificate name mismatch (wanted partner.test)"
    smtp::enhanced_code status;          // ours, for a reason that has an RFC 3463 code (5.6.3)
    std::string host;                    // which smart host / MX host answered ("" before any)
    std::string tls;                     // the attempt's TLS verdict word ("" when not connected)
    /// The next hop advertised DSN, so NOTIFY and ORCPT went with the RCPT and any later
    /// notice is its job. When false, a delivered recipient that asked for NOTIFY=SUCCESS
    /// is owed a "relayed" DSN from us (RFC 3461 §5.2.2).
    bool next_hop_dsn = false;

    /// "452 4.5.3 Too many recipients" or our reason: what queue show and DSNs print.
    std::string describe() const;
    /// RFC 5321 §4.5.3.1.10: 452 to RCPT asks for the rest in a new transaction.
    bool too_many_recipients() const { return remote && remote->code == 452 && what == verdict::transient; }
};

/// The RFC 3463 status for a DSN: the remote's enhanced code, else one derived from the
/// basic code, else 4.4.1 / 5.0.0 from the verdict.
smtp::enhanced_code dsn_status(const recipient_result& r);

}  // namespace postern::smtp
