// smtp/client_fsm.hpp: the send side of SMTP as a state machine without I/O.
//
// Standards: RFC 5321 (SMTP; §4.1.1.1 HELO fallback, §4.5.2 dot transparency, §4.5.3.1.10
// 452 too many recipients), RFC 3207 (STARTTLS), RFC 2920 (PIPELINING), RFC 1870 (SIZE),
// RFC 6152 (8BITMIME), RFC 6531 (SMTPUTF8), RFC 2034/3463 (enhanced status codes),
// RFC 3461 (DSN: RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT, sent only to a next hop
// that advertises DSN; §4.1-4.2 say a relay to one that does not leaves them off).
//
// The driver (delivery/client_session, the send command, probe) owns the socket and calls resume() with what
// happened; the machine answers with one action: write `out` (always first, may be empty),
// then read / start TLS / report a finished transaction / wait for the next one / close.
//
//     auto act = fsm.resume(client_event::connected());
//     while (act.what != client_action::kind::close)
//         act = fsm.resume(perform(act));
//
// Security:
//  - STARTTLS injection, client side (RFC 3207 §4.2; the client twin of CVE-2011-0411):
//    bytes the server sends after its 220 to STARTTLS and before the handshake are
//    discarded, and every capability learnt before TLS is forgotten; EHLO is sent again.
//  - The body is dot-stuffed here, so no line of the message can end DATA early.
//  - A message the next hop cannot carry (8-bit body without 8BITMIME, SMTPUTF8 without
//    SMTPUTF8, larger than its SIZE) is refused before MAIL, never downgraded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/capabilities.hpp"
#include "smtp/outcome.hpp"
#include "smtp/reply.hpp"
#include "smtp/reply_parser.hpp"

namespace postern::smtp {

/// RFC 3461 parameters of one recipient, as queued; "" = absent (not sent).
struct recipient_dsn {
    std::string notify;                 // "NEVER", "SUCCESS,DELAY" (upper case)
    std::string orcpt;                  // "rfc822;bob@example.test", xtext-encoded
};

/// One mail transaction: one sender, the recipients for this next hop, one body.
struct transaction {
    std::string mail_from;              // "" = null sender (bounces)
    std::vector<std::string> recipients;
    /// NOTIFY and ORCPT per recipient, index for index with `recipients`; it may be shorter
    /// (or empty): a recipient without an entry gets neither parameter.
    std::vector<recipient_dsn> recipient_params;
    std::string envid;                  // ENVID= as received (xtext); "" = absent
    std::string ret;                    // RET= "FULL" | "HDRS"; "" = absent
    bool body_8bit = false;             // BODY=8BITMIME was given when we received it
    bool smtputf8 = false;
    bool requiretls = false;            // RFC 8689: MAIL FROM carries REQUIRETLS (the hop must offer it)
    std::string body;                   // as queued: CRLF lines, not dot-stuffed
    /// Or, for a large body kept in a file (smtp::envelope::body_in_file): its path and
    /// size; the driver streams it, a block at a time, dot-stuffing as it goes.
    std::string body_file;
    std::uint64_t body_file_size = 0;
};

/// Lines for the protocol log, in the order they crossed the wire.
struct transcript_line {
    enum class kind { sent, received, info } what;
    std::string text;
};

struct client_settings {
    enum class starttls_use { never, if_offered, required };
    std::string helo_name = "localhost";      // [server] hostname
    starttls_use starttls = starttls_use::if_offered;
    bool implicit_tls = false;                // the connection is already TLS (smart_host_tls)
};

/// Which RFC 5321 §4.5.3.2 timeout applies to the wait the driver is about to do.
enum class wait_stage { greeting, helo, starttls, mail, rcpt, data_start, data_block, data_end, rset, quit };

struct client_event {
    enum class kind { connected, bytes, tls_established, tls_failed, closed, timed_out, send, quit } what;
    std::string data;                         // bytes; failure reason
    transaction tx;                           // kind::send

    static client_event connected() { return {kind::connected, {}, {}}; }
    static client_event bytes(std::string_view b) { return {kind::bytes, std::string(b), {}}; }
    static client_event tls_established() { return {kind::tls_established, {}, {}}; }
    static client_event tls_failed(std::string reason) { return {kind::tls_failed, std::move(reason), {}}; }
    static client_event closed(std::string reason = {}) { return {kind::closed, std::move(reason), {}}; }
    static client_event timed_out() { return {kind::timed_out, {}, {}}; }
    static client_event send(transaction t) { return {kind::send, {}, std::move(t)}; }
    static client_event quit() { return {kind::quit, {}, {}}; }
};

/// Why a connection ended before its work was done.
struct session_failure {
    std::string stage;                        // "greeting", "EHLO", "STARTTLS", "TLS handshake", ...
    std::optional<smtp::reply> remote;
    std::string reason;
    bool permanent = false;                   // a 5xx greeting or HELO: this host will not take mail
    bool tls_setup = false;                   // no STARTTLS, 454 or a failed handshake (DESIGN §3)
};

struct client_action {
    enum class kind {
        read,           // write `out`, then read; `stage` says which timeout applies
        write_data,     // write `data` (or `out`): the dot-stuffed body, in blocks, then read (data_end)
        start_tls,      // write `out` (empty), then run the TLS client handshake
        transaction_done, // `results` holds one entry per recipient of the transaction
        idle,           // ready: resume with send(tx) or quit()
        close,          // write `out` (may be empty), then close; `failure` when it failed
    } what = kind::read;
    std::string out;
    /// write_data without a copy: views into the transaction's body, valid until the
    /// machine is resumed with the next transaction.
    std::vector<std::string_view> data;
    /// write_data from a file instead (transaction::body_file): stream it dot-stuffed,
    /// then the final ".CRLF".
    std::string data_file;
    wait_stage stage = wait_stage::greeting;
    std::vector<recipient_result> results;
    std::optional<session_failure> failure;
    std::vector<transcript_line> log;
};

/// How a client session ends when it fails (session_failure; QUIT first or not).
struct session_ending {
    bool permanent = false;   // this host will not take mail (a 5xx greeting or HELO)
    bool tls_setup = false;   // no STARTTLS, its refusal or a failed handshake
    bool say_quit = false;    // the server is still listening: QUIT before closing
};

class client_fsm {
public:
    explicit client_fsm(client_settings settings);

    client_action resume(const client_event& ev);
    /// Same; a `send` event's transaction (with its body) is moved in, not copied.
    client_action resume(client_event&& ev);

    const capabilities& offered() const { return caps_; }
    bool tls_active() const { return tls_active_; }
    /// Bytes received after the 220 to STARTTLS and thrown away (RFC 3207 §4.2).
    std::size_t discarded_after_starttls() const { return discarded_; }
    /// True when a whole reply is already buffered: the driver resumes with empty bytes
    /// instead of reading (a server may answer several commands in one segment).
    bool input_pending() const { return parser_.complete_reply_buffered(); }

private:
    enum class state {
        start, greeting, ehlo, helo, starttls, handshake, ready,
        pipelined, mail, rcpt, data, data_end, dot_only, rset, quit, closed
    };

    client_action step(const client_event& ev);
    client_action drain_replies();
    client_action on_reply(const smtp::reply& r);
    client_action after_hello();
    client_action begin_transaction(transaction tx);
    client_action send_mail();
    client_action send_rcpt_or_data();
    client_action on_pipelined_reply(const smtp::reply& r);
    client_action send_body();
    client_action finish_from_replies();
    std::vector<recipient_result> results_from_replies(const std::optional<smtp::reply>& connection_reply,
                                                       const std::string& reason) const;
    client_action fail(std::string stage, std::optional<smtp::reply> remote, std::string reason, session_ending how = {});
    client_action fail_transaction_and_close(const std::optional<smtp::reply>& remote, const std::string& reason);
    client_action close_quietly();
    client_action read(wait_stage s, std::string out = {});
    wait_stage current_wait() const;
    std::string mail_command() const;
    std::string rcpt_command(std::size_t index) const;
    std::string stage_name() const;
    void sent(const std::string& line);

    client_settings settings_;
    state state_ = state::start;
    capabilities caps_;
    bool tls_active_ = false;
    bool used_ = false;                       // a transaction ran on this connection: RSET first
    std::size_t discarded_ = 0;
    reply_parser parser_;
    std::vector<transcript_line> log_;

    // the transaction in progress
    std::optional<transaction> tx_;
    std::optional<smtp::reply> mail_reply_;
    std::optional<smtp::reply> data_reply_;     // to DATA when it was refused, else to the final dot
    std::vector<std::optional<smtp::reply>> rcpt_replies_;
    std::size_t next_rcpt_ = 0;               // index of the RCPT to send or whose reply is due
    std::size_t accepted_ = 0;
    std::size_t pipelined_seen_ = 0;          // replies read in the pipelined group
};

}  // namespace postern::smtp
