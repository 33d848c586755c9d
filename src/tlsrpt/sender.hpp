// tlsrpt/sender.hpp: TLS-RPT reports sent (RFC 8460 §5) for the counts the delivery engine
// keeps (policy/tlsrpt_ledger.hpp).
//
// The period closes at each midnight UTC (§4.1: reports cover a UTC day), at start when
// it began on an earlier day (the server was down over midnight), and on `postern tlsrpt
// send` (now). With [tls_rpt] enabled, each policy domain of the closed period gets its
// report: the _smtp._tls TXT record is looked up (§3); the report is gzipped JSON (§4.4,
// §5.1); "https:" addresses get a POST of application/tlsrpt+gzip (§5.2), retried with
// back-off for up to a day (§5.4); "mailto:" addresses get one
// message (§5.3) committed to the queue like a DSN and delivered by the send connectors.
// Mailed reports loop nowhere: the null reverse path (no DSN ever goes back), "TLS-Required:
// No" (delivered despite TLS failures), and their own sessions are not counted (the
// envelope's receive_connector is smtp::tls_report_origin). Disabled, a closed period is
// dropped: counting goes on, nothing leaves.
// data_dir/tlsrpt-outbox.json (0600) holds a closed period until each of its domains'
// reports is queued or waiting as a POST, and each POST until it succeeds or is given up:
// a restart or a crash resumes from there (a domain caught mid-way may get its report twice).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "config/schema.hpp"
#include "policy/tlsrpt_ledger.hpp"
#include "queue/store.hpp"
#include "route/next_hop_source.hpp"

namespace postern::tlsrpt {

/// What became of one report for one address (or of a domain that takes none).
struct outcome {
    std::string domain;
    std::string destination;   // the rua URI; "" when the domain takes no reports
    bool ok = false;
    std::string detail;        // "queued as ID", "HTTP 200", "no TLS-RPT record", the error
};

struct sender_options {
    std::chrono::seconds tick{60};                          // how often midnight and retries are looked at
    std::vector<std::chrono::seconds> post_retries{         // §5.4: within a day, growing
        std::chrono::minutes(5), std::chrono::minutes(30), std::chrono::hours(2), std::chrono::hours(6),
        std::chrono::hours(12)};
};

class sender {
public:
    /// `https` gives the TLS client context for report hosts (system store and the key
    /// ring's roots, no client certificate). `ledger`, `dns` and `store` outlive the sender;
    /// `store` wakes delivery after each commit.
    sender(const config::configuration& cfg, policy::tlsrpt_ledger& ledger, route::next_hop_source& dns,
           queue::store& store, std::function<std::shared_ptr<SSL_CTX>()> https, sender_options options = {});
    ~sender();

    void start();   // a thread of its own
    void stop();    // POSTs under way are abandoned; they wait in the outbox for the next start
    void update_configuration(const config::configuration& cfg);

    /// `postern tlsrpt send`: closes the open period now and sends its reports; waits up to
    /// `limit` for the outcomes. Refused (empty, `refusal` set) when [tls_rpt] is disabled.
    std::vector<outcome> send_now(std::chrono::seconds limit, std::string& refusal);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace postern::tlsrpt
