// smtp/server_fsm.hpp: the receive side of SMTP as a state machine without I/O.
//
// Standards: RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 2920 (PIPELINING), RFC 1870 (SIZE),
// RFC 6152 (8BITMIME), RFC 2034 (ENHANCEDSTATUSCODES), RFC 6531 (SMTPUTF8),
// RFC 3461 (DSN parameters), RFC 3848 (Received: "with ESMTPS"), RFC 3463 (status codes).
//
// The driver (net/server_session) owns the socket and calls resume() with what happened;
// the machine answers with one action: write `out` (always first, may be empty), then
// read more / start TLS / commit the message / close. Nothing here blocks or touches a
// socket or a disk, so every dialogue is a unit test and a fuzz input.
//
//     auto act = fsm.resume(event::connected());
//     while (act.what != action::kind::close)
//         act = fsm.resume(perform(act));          // the only place that does I/O
//
// Security:
//  - STARTTLS injection (RFC 3207 §4.2, CVE-2011-0411): every byte received after the
//    STARTTLS line and before the handshake is discarded, and the session starts over.
//  - SMTP smuggling: DATA ends at <CRLF>.<CRLF> only (smtp/dot_reader.hpp).
//  - A message is acknowledged (250) only after event::committed reports success.
//  - The protocol log gets AUTH arguments as <secret> and never a message body.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/envelope.hpp"
#include "smtp/command.hpp"
#include "smtp/dot_reader.hpp"
#include "smtp/reply.hpp"

namespace postern::smtp {

/// What a receive connector asks of a session, in protocol terms. net/ fills it from
/// config::receive_connector and [server]; the protocol does not read configuration.
struct server_policy {
    enum class tls_offer { none, starttls, implicit };

    std::string hostname = "localhost";           // banner, EHLO reply, Received: "by"
    std::string connector_name;
    tls_offer tls = tls_offer::starttls;
    bool require_tls = false;                     // MAIL/RCPT/DATA before TLS -> 530 5.7.0
    bool mutual_tls = false;                      // not a partner after TLS -> 554 5.7.0
    bool relay_for_anonymous = false;             // accept_any_recipient + anonymous_users
    bool relay_for_partners = false;              // accept_any_recipient + partners
    std::vector<std::string> accepted_domains;    // compared case-insensitively
    std::uint64_t max_message_size = 35ull * 1024 * 1024;
    std::uint32_t max_recipients = 200;
    std::uint64_t max_header_size = 256ull * 1024;
    std::uint32_t max_hop_count = 50;
    std::uint32_t max_protocol_errors = 5;
    /// A body is handed to the driver (action::body_chunk) whenever this much of it is
    /// buffered, so a session never holds more of a large message (0: hold it all).
    std::uint64_t body_chunk_size = 0;
    /// NOOP, VRFY, EXPN, HELP, ETRN, RSET and repeated HELO/EHLO allowed between accepted
    /// messages (Postfix: smtpd_junk_command_limit); one more gets 421 4.7.0 and close.
    std::uint32_t max_junk_commands = 100;
    /// Accept user%host@ours, host!user@ours and "user@host"@ours from clients without
    /// relay permission (Postfix: allow_untrusted_routing).
    bool allow_untrusted_routing = false;
    /// Accepted domains that no send connector covers (net/connector_choice): RCPT for
    /// them gets 451 4.4.4 and the driver is told (session_params::configuration_problem).
    std::vector<std::string> unrouted_domains;
    /// For a recipient in one of our domains: whether it exists (authoritative domains).
    /// Empty: every recipient of ours is taken (internal_relay). `ask`: the answer is not
    /// at hand (a directory must be asked): the machine hands the driver
    /// action::check_recipient and waits for event::recipient_checked.
    enum class recipient_status { known, unknown, unavailable, ask };
    std::function<recipient_status(const std::string& address)> check_recipient;
};

/// The outcome of a TLS handshake as far as the protocol cares (net/ reads it off the
/// SSL* with tls::inspect() and tls::is_partner()).
struct tls_summary {
    std::string protocol;                         // "TLSv1.3"
    std::string cipher;                           // "TLS_AES_256_GCM_SHA384"
    int cipher_bits = 0;
    bool certificate_presented = false;
    bool certificate_verified = false;
    std::string verify_error;                     // when presented but not verified
    std::string subject, issuer, sha256;
    bool partner = false;                         // the partner rule of DESIGN §3 holds
    std::string partner_reason;                   // why not, for the protocol log
};

/// Why the session was accepted at all; anything but `normal` ends in the banner.
enum class admission {
    normal,
    no_connector,                                 // 554 5.7.1, then only QUIT
    too_many_connections,                         // 421 4.7.0, close
};

struct session_params {
    server_policy policy;
    admission admitted = admission::normal;
    std::string session_id;                       // protocol-log session id, Received: "id"
    std::string client_ip;                        // "192.0.2.1" or "2001:db8::1"
    std::uint16_t client_port = 0;
    bool tls_available = true;                    // a TLS context exists for STARTTLS
    /// True while the queue store would refuse a commit for lack of space (452 4.3.1 at MAIL).
    std::function<bool()> storage_low;
    /// True while the queue store is in its failed state (451 4.3.0 at MAIL).
    std::function<bool()> storage_failed;
    /// Clock for the Received: date; tests pass a fixed one.
    std::function<std::chrono::system_clock::time_point()> clock;
    /// A mistake in this server's configuration met by the session (an accepted domain
    /// without a route), for the server log; may be empty.
    std::function<void(const std::string&)> configuration_problem;
    /// [debug] smtp_server_debug: also say, as info lines, why each recipient was taken.
    bool explain_decisions = false;
};

/// One protocol-log line produced by the machine, in the order things happened.
struct log_entry {
    enum class kind { received, sent, info };
    kind what;
    std::string text;
    friend bool operator==(const log_entry&, const log_entry&) = default;
};

struct event {
    enum class kind {
        connected,        // socket accepted (and, for implicit TLS, the handshake done)
        bytes,            // octets read from the client
        tls_done,         // STARTTLS handshake completed
        tls_failed,       // STARTTLS handshake failed: `reason`
        committed,        // the store answered the commit action
        timeout,          // inactivity or whole-session limit reached
        shutdown,         // polite stop: finish the transaction, then 421 4.3.2
        shutdown_now,     // grace over: 421 4.3.2 now
        peer_closed,      // EOF or read error: `reason`
        recipient_checked,// the directory answered action::check_recipient: `status`, `reason`
    };
    kind what = kind::connected;
    std::string_view data;                        // bytes
    std::optional<tls_summary> tls;               // tls_done; connected with implicit TLS
    std::string reason;                           // tls_failed, peer_closed
    bool commit_ok = false;                       // committed
    std::string commit_id;                        // committed, on success
    std::string commit_reason;                    // committed, on failure (log only)
    bool commit_store_failed = false;             // committed, on failure: 451 4.3.0, not 452 4.3.1
    server_policy::recipient_status status = server_policy::recipient_status::unavailable;   // recipient_checked

    static event connected(std::optional<tls_summary> implicit_tls = std::nullopt);
    static event bytes(std::string_view data);
    static event tls_established(tls_summary s);
    static event tls_failure(std::string reason);
    static event commit_result(bool ok, std::string id, std::string reason, bool store_failed = false);
    static event timed_out();
    static event stop(bool now);
    static event closed(std::string reason = {});
    /// `note`: for the protocol log (why the directory could not answer, a stale answer used).
    static event recipient_result(server_policy::recipient_status status, std::string note = {});
};

struct action {
    enum class kind {
        read,             // read more and resume(bytes)
        start_tls,        // handshake as server, then resume(tls_done | tls_failed)
        commit,           // store.commit(envelope, body), then resume(committed)
        close,            // close the connection (after writing `out`)
        check_recipient,  // ask the directory about `recipient`, then resume(recipient_checked)
    };
    kind what = kind::read;
    std::string out;                              // write this first, then do `what`
    std::vector<log_entry> log;                   // protocol-log lines for the driver
    smtp::envelope envelope;                     // commit
    std::string body;                             // commit: Received: header + message (its
                                                  // last part when chunks were handed out)
    /// Body octets to append to the transaction's spool before anything else is done;
    /// the driver drops the spool when the machine leaves DATA without a commit.
    std::string body_chunk;
    std::string recipient;                        // check_recipient
};

/// Flags of the command table (STYLE E3, after Postfix smtpd_cmd_table).
enum command_flag : unsigned {
    pre_tls = 1u << 0,          // allowed before STARTTLS on a require_tls connector
    ends_group = 1u << 1,       // RFC 2920 §3.1: last command of a pipelined group
    needs_no_argument = 1u << 2,// anything after the verb is a 501 5.5.4
    any_time = 1u << 3,         // allowed without a client certificate (mutual_tls): QUIT
    forbidden = 1u << 4,        // HTTP verbs: drop the connection (cross-protocol attacks)
    junk = 1u << 5,             // counts toward max_junk_commands (HELO/EHLO only when repeated)
};

class server_fsm;
using command_handler = void (server_fsm::*)(const command&);

struct command_spec {
    std::string_view verb;
    command_handler on;
    unsigned flags;
};

class server_fsm {
public:
    explicit server_fsm(session_params params);

    action resume(const event& ev);

    // Observers for tests and the driver's log lines.
    bool tls_active() const { return tls_.has_value(); }
    const std::optional<tls_summary>& tls() const { return tls_; }
    bool in_transaction() const { return mail_given_; }
    bool in_data() const { return in_data_; }
    std::uint32_t protocol_errors() const { return errors_; }
    std::uint32_t junk_commands() const { return junk_; }
    std::uint64_t messages_accepted() const { return accepted_; }
    const session_params& params() const { return params_; }

    /// The command table, exposed for tests of its flags.
    static const std::vector<command_spec>& commands();

    /// Builds the Received: header of DESIGN §5 for the current transaction (exposed for tests).
    std::string received_header() const;

private:
    // command handlers (the table refers to these)
    void on_ehlo(const command&);
    void on_helo(const command&);
    void on_mail(const command&);
    void on_rcpt(const command&);
    void on_data(const command&);
    void on_rset(const command&);
    void on_noop(const command&);
    void on_quit(const command&);
    void on_vrfy(const command&);
    void on_help(const command&);
    void on_starttls(const command&);
    void on_not_implemented(const command&);
    void on_forbidden(const command&);

    void process_input();
    void process_line(const line& l);
    void finish_data();
    std::size_t feed_data(std::string_view bytes);   // dot_reader::feed, handing out full chunks
    void on_connected(const event& ev);
    void on_bytes(std::string_view data);
    void on_committed(const event& ev);
    void on_recipient_checked(const event& ev);
    void finish_rcpt(server_policy::recipient_status status, const std::string& note, bool postmaster = false);
    void on_shutdown(bool now);
    action next_action();
    void tls_established(const tls_summary& summary);
    void send(const reply& r);
    void send_error(const reply& r);          // a 5xx to a command: counts toward max_protocol_errors
    void info(std::string text);
    void reset_transaction();
    void after_transaction();                 // polite shutdown takes effect here
    void close_with(const reply& r);
    bool relay_permitted() const;
    bool over_junk_limit(const command_spec& spec);
    bool need_tls() const;
    action take(action::kind k);

    enum class next { none, read, start_tls, commit, close, check_recipient };

    session_params params_;
    line_reader lines_;
    std::string pending_out_;                 // replies waiting for the end of the group
    std::vector<log_entry> pending_log_;
    next next_ = next::read;
    bool greeted_ = false;                    // EHLO/HELO since the start (or since TLS)
    bool esmtp_ = false;
    std::string helo_name_;
    std::optional<tls_summary> tls_;
    bool mail_given_ = false;
    std::optional<std::uint64_t> declared_size_;   // MAIL ... SIZE= (RFC 1870), a hint for the body buffer
    bool in_data_ = false;
    bool committing_ = false;
    /// RCPT waiting for the directory (action::check_recipient); input waits meanwhile.
    std::optional<smtp::recipient> checking_;
    bool shutting_down_ = false;
    bool closed_ = false;
    std::uint32_t errors_ = 0;
    std::uint32_t junk_ = 0;                  // since the last accepted message
    std::uint64_t accepted_ = 0;
    std::uint64_t transactions_ = 0;

    // the current transaction
    smtp::envelope envelope_;
    std::optional<dot_reader> data_;
    std::string commit_body_;
    std::string body_chunk_;                  // handed out with the next action
};

}  // namespace postern::smtp
