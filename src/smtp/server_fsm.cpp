// smtp/server_fsm.cpp: the receive-side state machine (see server_fsm.hpp).
#include "smtp/server_fsm.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>

#include <fmt/format.h>

#include "smtp/address.hpp"
#include "smtp/replies.hpp"

namespace postern::smtp {

// --- events -----------------------------------------------------------------------------

event event::connected(std::optional<tls_summary> implicit_tls) {
    event e;
    e.what = kind::connected;
    e.tls = std::move(implicit_tls);
    return e;
}
event event::bytes(std::string_view data) {
    event e;
    e.what = kind::bytes;
    e.data = data;
    return e;
}
event event::tls_established(tls_summary s) {
    event e;
    e.what = kind::tls_done;
    e.tls = std::move(s);
    return e;
}
event event::tls_failure(std::string reason) {
    event e;
    e.what = kind::tls_failed;
    e.reason = std::move(reason);
    return e;
}
event event::commit_result(bool ok, std::string id, std::string reason, bool store_failed) {
    event e;
    e.commit_store_failed = store_failed;
    e.what = kind::committed;
    e.commit_ok = ok;
    e.commit_id = std::move(id);
    e.commit_reason = std::move(reason);
    return e;
}
event event::recipient_result(server_policy::recipient_status status, std::string note) {
    event e;
    e.what = kind::recipient_checked;
    e.status = status;
    e.reason = std::move(note);
    return e;
}

event event::timed_out() {
    event e;
    e.what = kind::timeout;
    return e;
}
event event::stop(bool now) {
    event e;
    e.what = now ? kind::shutdown_now : kind::shutdown;
    return e;
}
event event::closed(std::string reason) {
    event e;
    e.what = kind::peer_closed;
    e.reason = std::move(reason);
    return e;
}

// --- the command table (STYLE E3) ---------------------------------------------------------

const std::vector<command_spec>& server_fsm::commands() {
    // Flags after Postfix's smtpd_cmd_table; group ends after RFC 2920 §3.1.
    static const std::vector<command_spec> table = {
        {"EHLO", &server_fsm::on_ehlo, pre_tls | ends_group | junk},
        {"HELO", &server_fsm::on_helo, pre_tls | ends_group | junk},
        {"STARTTLS", &server_fsm::on_starttls, pre_tls | ends_group | needs_no_argument},
        {"MAIL", &server_fsm::on_mail, 0},
        {"RCPT", &server_fsm::on_rcpt, 0},
        {"DATA", &server_fsm::on_data, ends_group | needs_no_argument},
        {"RSET", &server_fsm::on_rset, pre_tls | needs_no_argument | junk},
        {"NOOP", &server_fsm::on_noop, pre_tls | ends_group | junk},     // §4.1.1.9: argument ignored
        {"QUIT", &server_fsm::on_quit, pre_tls | ends_group | any_time},
        {"VRFY", &server_fsm::on_vrfy, ends_group | junk},
        {"HELP", &server_fsm::on_help, pre_tls | ends_group | junk},
        {"EXPN", &server_fsm::on_not_implemented, ends_group | junk},
        {"TURN", &server_fsm::on_not_implemented, ends_group},
        {"ETRN", &server_fsm::on_not_implemented, ends_group | junk},
        {"BDAT", &server_fsm::on_not_implemented, ends_group},
        {"AUTH", &server_fsm::on_not_implemented, ends_group},
        // An HTTP client pointed at an SMTP port (or a browser-based cross-protocol attack).
        {"GET", &server_fsm::on_forbidden, forbidden | pre_tls | any_time},
        {"POST", &server_fsm::on_forbidden, forbidden | pre_tls | any_time},
        {"HEAD", &server_fsm::on_forbidden, forbidden | pre_tls | any_time},
        {"PUT", &server_fsm::on_forbidden, forbidden | pre_tls | any_time},
        {"CONNECT", &server_fsm::on_forbidden, forbidden | pre_tls | any_time},
    };
    return table;
}

// --- helpers ------------------------------------------------------------------------------

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Client-supplied text in a header we write: printable ASCII only, and none of the
// characters that would end a comment, a domain literal or the header itself.
std::string sanitise(std::string_view text, std::size_t max = 255) {
    std::string out;
    for (char c : text.substr(0, max)) {
        const auto u = static_cast<unsigned char>(c);
        const bool safe = u > 32 && u < 127 && c != '(' && c != ')' && c != '[' && c != ']' &&
                          c != '\\' && c != ';' && c != '"';
        out.push_back(safe ? c : '?');
    }
    return out.empty() ? std::string("unknown") : out;
}

// RFC 5322 §3.3 date-time in UTC, independent of the process locale.
std::string rfc5322_date(std::chrono::system_clock::time_point t) {
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    return fmt::format("{}, {} {} {} {:02}:{:02}:{:02} +0000", days[tm.tm_wday], tm.tm_mday,
                       months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

// Sender-specified routing (RFC 5321 §3.6.1, Postfix's allow_untrusted_routing): a
// local part with '%' or '!', or with an '@' of its own (quoted, or a second '@'), asks
// the accepting host to pass the mail on to another host.
bool routes_elsewhere(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) return false;
    return address.substr(0, at).find_first_of("%!@") != std::string_view::npos;
}

// RFC 5321 §4.5.1: postmaster (in any case) exists in every domain we take mail for, so a
// directory is never asked about it.
bool is_postmaster(std::string_view address) {
    const auto at = address.rfind('@');
    if (at != 10) return false;
    return std::equal(address.begin(), address.begin() + 10, "postmaster",
                      [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

std::string first_word(std::string_view s) {
    auto sp = s.find_first_of(" \t");
    return std::string(s.substr(0, sp));
}

}  // namespace

server_fsm::server_fsm(session_params params) : params_(std::move(params)) {
    if (!params_.clock) params_.clock = [] { return std::chrono::system_clock::now(); };
    for (auto& d : params_.policy.accepted_domains) d = lower(d);
    for (auto& d : params_.policy.unrouted_domains) d = lower(d);
}

void server_fsm::send(const reply& r) {
    pending_out_ += r.wire();
    for (auto& l : r.lines()) pending_log_.push_back({log_entry::kind::sent, std::move(l)});
}

void server_fsm::send_error(const reply& r) {
    send(r);
    // Postfix's smtpd_hard_error_limit: a client that keeps making errors is not a mailer.
    if (++errors_ >= params_.policy.max_protocol_errors && !closed_) {
        info(fmt::format("{} protocol errors: closing", errors_));
        close_with(replies::too_many_errors(params_.policy.hostname));
    }
}

void server_fsm::info(std::string text) { pending_log_.push_back({log_entry::kind::info, std::move(text)}); }

void server_fsm::close_with(const reply& r) {
    send(r);
    next_ = next::close;
    closed_ = true;
}

void server_fsm::reset_transaction() {
    body_chunk_.clear();                      // a rejected body's chunk is not worth writing
    mail_given_ = false;
    in_data_ = false;
    data_.reset();
    envelope_ = smtp::envelope{};
}

void server_fsm::after_transaction() {
    if (shutting_down_ && !closed_) close_with(replies::shutting_down(params_.policy.hostname));
}

// mutual_tls implies require_tls (config validation insists); checked here as well so a
// client certificate requirement can never be sidestepped in plaintext.
bool server_fsm::need_tls() const { return (params_.policy.require_tls || params_.policy.mutual_tls) && !tls_; }

// Postfix's smtpd_junk_command_limit, but a hard stop: a client that keeps the session
// busy without sending mail is cut off. HELO/EHLO count only when repeated (the EHLO that
// follows STARTTLS starts the session over and is needed). The count starts again after
// every accepted message, so RSET between messages on a cached connection is never junk
// in bulk.
bool server_fsm::over_junk_limit(const command_spec& spec) {
    if (!(spec.flags & junk)) return false;
    const bool greeting = spec.verb == "EHLO" || spec.verb == "HELO";
    if (greeting && !greeted_) return false;
    if (++junk_ <= params_.policy.max_junk_commands) return false;
    info(fmt::format("{} commands without a message (max_junk_commands {}): closing", junk_ - 1,
                     params_.policy.max_junk_commands));
    close_with(replies::too_many_junk_commands(params_.policy.hostname));
    return true;
}

bool server_fsm::relay_permitted() const {
    if (params_.policy.relay_for_anonymous) return true;
    return params_.policy.relay_for_partners && tls_ && tls_->partner;
}

action server_fsm::take(action::kind k) {
    action a;
    a.what = k;
    a.out = std::move(pending_out_);
    a.log = std::move(pending_log_);
    a.body_chunk = std::move(body_chunk_);
    pending_out_.clear();
    pending_log_.clear();
    body_chunk_.clear();
    return a;
}

// --- the main loop --------------------------------------------------------------------------

action server_fsm::resume(const event& ev) {
    if (closed_) return take(action::kind::close);
    next_ = next::read;

    switch (ev.what) {
    case event::kind::connected: on_connected(ev); break;
    case event::kind::bytes: on_bytes(ev.data); break;
    case event::kind::tls_done:
        tls_established(ev.tls ? *ev.tls : tls_summary{});
        process_input();
        break;
    case event::kind::tls_failed:
        info("TLS handshake failed: " + ev.reason);
        next_ = next::close;        // nothing can be said on a broken TLS layer
        closed_ = true;
        break;
    case event::kind::committed: on_committed(ev); break;
    case event::kind::recipient_checked: on_recipient_checked(ev); break;
    case event::kind::timeout:
        if (in_data_) info("timeout in DATA: message discarded");
        close_with(replies::timeout(params_.policy.hostname));
        break;
    case event::kind::shutdown: on_shutdown(false); break;
    case event::kind::shutdown_now: on_shutdown(true); break;
    case event::kind::peer_closed:
        if (in_data_ || mail_given_) info("connection lost in a transaction: nothing was acknowledged");
        if (!ev.reason.empty()) info("connection closed: " + ev.reason);
        next_ = next::close;
        closed_ = true;
        pending_out_.clear();
        break;
    }
    return next_action();
}

void server_fsm::on_connected(const event& ev) {
    if (ev.tls) {
        info("implicit TLS");
        tls_established(*ev.tls);
    }
    switch (params_.admitted) {
    case admission::normal:
        send(replies::greeting(params_.policy.hostname));
        break;
    case admission::no_connector:
        info("no receive connector matches this client");
        send(replies::no_service(params_.policy.hostname));
        break;
    case admission::too_many_connections:
        info("connection limit reached (max_inbound_connections or max_inbound_connections_per_source)");
        close_with(replies::too_many_connections(params_.policy.hostname));
        break;
    }
}

void server_fsm::on_bytes(std::string_view data) {
    if (committing_ || checking_) {   // the driver does not read while committing or checking; be safe
        lines_.feed(data);
        return;
    }
    if (in_data_) {
        data.remove_prefix(feed_data(data));
        if (data_->done()) {
            in_data_ = false;
            lines_.feed(data);
            finish_data();
        }
    } else {
        lines_.feed(data);
    }
    process_input();
}

void server_fsm::on_committed(const event& ev) {
    committing_ = false;
    if (ev.commit_ok) {
        ++accepted_;
        junk_ = 0;
        send(replies::queued(ev.commit_id));
    } else {
        info("queue store: " + ev.commit_reason);
        send(ev.commit_store_failed ? replies::queue_failed() : replies::queue_unavailable());
    }
    reset_transaction();
    after_transaction();
    process_input();
}

/// A polite stop finishes the transaction in progress first; `now` (the grace is over)
/// abandons it, unacknowledged.
void server_fsm::on_shutdown(bool now) {
    shutting_down_ = true;
    if (now) {
        if (in_data_ || mail_given_) info("shutdown grace over: transaction abandoned, nothing was acknowledged");
        close_with(replies::shutting_down(params_.policy.hostname));
    } else if (!mail_given_ && !in_data_ && !committing_ && !checking_) {
        close_with(replies::shutting_down(params_.policy.hostname));
    } else {
        info("shutdown requested: finishing the current transaction");
    }
}

action server_fsm::next_action() {
    switch (next_) {
    case next::none:
    case next::read: return take(action::kind::read);
    case next::start_tls: return take(action::kind::start_tls);
    case next::close: return take(action::kind::close);
    case next::check_recipient: {
        auto a = take(action::kind::check_recipient);
        a.recipient = checking_ ? checking_->address : std::string();
        return a;
    }
    case next::commit: {
        auto a = take(action::kind::commit);
        a.envelope = std::move(envelope_);
        a.body = std::move(commit_body_);
        commit_body_.clear();
        return a;
    }
    }
    return take(action::kind::close);
}

void server_fsm::tls_established(const tls_summary& summary) {
    tls_ = summary;
    const auto& t = *tls_;
    info(fmt::format("TLS protocol={} cipher={} bits={}", t.protocol, t.cipher, t.cipher_bits));
    if (t.certificate_presented) {
        info(fmt::format("client certificate subject=\"{}\" issuer=\"{}\" sha256={} verified={}{}", t.subject,
                         t.issuer, t.sha256, t.certificate_verified ? "yes" : "no",
                         t.certificate_verified ? "" : " (" + t.verify_error + ")"));
    } else {
        info("client certificate: none");
    }
    if (params_.policy.mutual_tls) {
        if (t.partner)
            info("verdict: partner (mutual_tls satisfied)");
        else
            info(fmt::format("verdict: not a partner ({}); every command but QUIT gets 554 5.7.0",
                             t.partner_reason.empty() ? "no certificate" : t.partner_reason));
    } else {
        info(fmt::format("verdict: encryption_only achieved{}", t.partner ? ", client is a partner" : ""));
    }
    // RFC 3207 §4.2: the server discards knowledge obtained from the client and starts over.
    greeted_ = false;
    esmtp_ = false;
    helo_name_.clear();
    reset_transaction();
}

void server_fsm::process_input() {
    while (next_ == next::read && !closed_) {
        if (in_data_) {
            // DATA was just accepted: whatever the client already sent is message text.
            auto rest = lines_.take_rest();
            if (rest.empty()) break;
            auto used = feed_data(rest);
            if (!data_->done()) break;
            in_data_ = false;
            lines_.feed(std::string_view(rest).substr(used));
            finish_data();
            continue;
        }
        auto l = lines_.next();
        if (!l) break;
        process_line(*l);
    }
}

void server_fsm::process_line(const line& l) {
    if (l.state == line::status::too_long) {
        info("command line over 2048 octets discarded");
        send_error(replies::line_too_long());
        return;
    }
    if (l.state == line::status::nul) {
        info("command line with NUL discarded");
        send_error(replies::nul_in_command());
        return;
    }
    pending_log_.push_back({log_entry::kind::received, redact_for_log(l.text)});

    auto cmd = parse_command(l.text);
    if (!cmd) {
        send_error(replies::unknown_command());
        return;
    }
    const auto& table = commands();
    auto spec = std::find_if(table.begin(), table.end(), [&](const command_spec& s) { return s.verb == cmd->verb; });
    if (spec == table.end()) {
        send_error(replies::unknown_command());
        return;
    }
    if (spec->flags & forbidden) {
        (this->*spec->on)(*cmd);
        return;
    }
    if (params_.admitted == admission::no_connector && !(spec->flags & any_time)) {
        send_error(replies::no_service_only_quit());
        return;
    }
    if (params_.policy.mutual_tls && tls_ && !tls_->partner && !(spec->flags & any_time)) {
        send_error(replies::client_certificate_required());
        return;
    }
    if (need_tls() && !(spec->flags & pre_tls)) {
        send_error(replies::starttls_required());
        return;
    }
    if ((spec->flags & needs_no_argument) && !cmd->argument.empty()) {
        send_error(replies::no_parameters_allowed());
        return;
    }
    if (over_junk_limit(*spec)) return;
    (this->*spec->on)(*cmd);
    if ((spec->flags & ends_group) && next_ == next::read && !in_data_ && lines_.buffered() > 0)
        info(fmt::format("improper command pipelining after {}", cmd->verb));   // RFC 2920 §3.1
}

// --- handlers -------------------------------------------------------------------------------

void server_fsm::on_ehlo(const command& c) {
    if (c.argument.empty()) return send_error(replies::helo_syntax());
    reset_transaction();                     // RFC 5321 §4.1.4: EHLO implies RSET
    greeted_ = true;
    esmtp_ = true;
    helo_name_ = first_word(c.argument);
    const auto& p = params_.policy;
    std::string text = p.hostname;
    text += "\nPIPELINING";
    text += fmt::format("\nSIZE {}", p.max_message_size);
    text += "\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nDSN";
    if (p.tls == server_policy::tls_offer::starttls && !tls_ && params_.tls_available) text += "\nSTARTTLS";
    // RFC 8689 §4.1: offered only where it can be honoured, over TLS.
    if (tls_) text += "\nREQUIRETLS";
    send(reply{250, {}, std::move(text)});
}

void server_fsm::on_helo(const command& c) {
    if (c.argument.empty()) return send_error(replies::helo_syntax());
    reset_transaction();
    greeted_ = true;
    esmtp_ = false;
    helo_name_ = first_word(c.argument);
    send(replies::helo_ok(params_.policy.hostname));
}

void server_fsm::on_mail(const command& c) {
    if (!greeted_) return send_error(replies::helo_first());
    if (mail_given_) return send_error(replies::nested_mail());
    auto r = parse_mail_from(c.argument);
    switch (r.error) {
    case address_error::none: break;
    case address_error::syntax: return send_error(replies::mail_syntax());
    case address_error::bad_address: info("MAIL: " + r.detail); return send_error(replies::bad_sender_address());
    case address_error::utf8_not_allowed: return send(replies::utf8_needs_smtputf8());
    case address_error::unsupported_parameter: info("MAIL: " + r.detail); return send_error(replies::unsupported_parameter());
    case address_error::bad_parameter: info("MAIL: " + r.detail); return send_error(replies::bad_parameter());
    }
    const auto& m = r.value;
    const bool any_parameter = m.size || m.body != body_type::unspecified || m.smtputf8 || !m.ret.empty() ||
                               !m.envid.empty() || m.requiretls;
    if (!esmtp_ && any_parameter) return send_error(replies::unsupported_parameter());   // HELO: no extensions
    if (m.requiretls && !tls_) {
        info("MAIL: REQUIRETLS without TLS");
        return send_error(replies::requiretls_needs_tls());
    }
    if (m.size && *m.size > params_.policy.max_message_size) {
        info(fmt::format("SIZE={} over max_message_size {}", *m.size, params_.policy.max_message_size));
        return send(replies::message_too_big());
    }
    if (params_.storage_failed && params_.storage_failed()) {
        info("queue store failed; recovering");
        return send(replies::queue_failed());
    }
    if (params_.storage_low && params_.storage_low()) {
        info("queue store low on space (below min_free)");
        return send(replies::queue_unavailable());
    }
    reset_transaction();
    mail_given_ = true;
    declared_size_ = m.size;
    envelope_.mail_from = m.address;
    envelope_.body_8bit = m.body == body_type::eight_bit_mime;
    envelope_.smtputf8 = m.smtputf8;
    envelope_.requiretls = m.requiretls;
    envelope_.envid = m.envid;
    envelope_.ret = m.ret;
    envelope_.client_address = params_.client_ip.find(':') != std::string::npos
                                   ? fmt::format("[{}]:{}", params_.client_ip, params_.client_port)
                                   : fmt::format("{}:{}", params_.client_ip, params_.client_port);
    envelope_.client_helo = helo_name_;
    envelope_.receive_connector = params_.policy.connector_name;
    envelope_.session_id = params_.session_id;
    send(replies::sender_ok());
}

void server_fsm::on_rcpt(const command& c) {
    if (!mail_given_) return send_error(replies::mail_first());
    auto r = parse_rcpt_to(c.argument, envelope_.smtputf8);
    switch (r.error) {
    case address_error::none: break;
    case address_error::syntax: return send_error(replies::rcpt_syntax());
    case address_error::bad_address: info("RCPT: " + r.detail); return send_error(replies::bad_recipient_address());
    case address_error::utf8_not_allowed: return send(replies::utf8_needs_smtputf8());
    case address_error::unsupported_parameter: info("RCPT: " + r.detail); return send_error(replies::unsupported_parameter());
    case address_error::bad_parameter: info("RCPT: " + r.detail); return send_error(replies::bad_parameter());
    }
    const auto& rc = r.value;
    if (!esmtp_ && (!rc.notify.empty() || !rc.orcpt.empty())) return send_error(replies::unsupported_parameter());
    if (envelope_.recipients.size() >= params_.policy.max_recipients) {
        if (params_.explain_decisions)
            info(fmt::format("recipient refused: max_recipients ({}) reached", params_.policy.max_recipients));
        return send(replies::too_many_recipients());
    }
    std::string address = rc.address;
    bool checked = false;   // whether the policy says if this recipient exists
    if (rc.postmaster) {
        address = "postmaster@" + params_.policy.hostname;    // RFC 5321 §4.5.1: always ours
    } else {
        const auto domain = domain_of(address);
        const auto& accepted = params_.policy.accepted_domains;
        const bool ours = std::find(accepted.begin(), accepted.end(), domain) != accepted.end();
        if (!ours && !relay_permitted()) {
            info(fmt::format("relay denied: domain {} is not in accepted_domains and the client has no "
                             "accept_any_recipient permission", sanitise(domain)));
            return send(replies::relay_denied());
        }
        if (ours && !relay_permitted() && !params_.policy.allow_untrusted_routing && routes_elsewhere(address)) {
            info(fmt::format("relay denied: local part of {} routes elsewhere (%, ! or @) and the client has no "
                             "relay permission", sanitise(address)));
            return send(replies::routing_denied());
        }
        const auto& unrouted = params_.policy.unrouted_domains;
        if (ours && std::find(unrouted.begin(), unrouted.end(), domain) != unrouted.end()) {
            const auto problem = fmt::format("accepted domain {} has no route: no send connector's address_spaces "
                                             "cover it; RCPT gets 451 4.4.4 until one does",
                                             sanitise(domain));
            info(problem);
            if (params_.configuration_problem) params_.configuration_problem(problem);
            return send(replies::no_route());
        }
        checked = ours && params_.policy.check_recipient && !is_postmaster(address);
    }
    checking_ = smtp::recipient{};
    checking_->address = std::move(address);
    checking_->orcpt = rc.orcpt;
    checking_->notify = rc.notify;
    if (!checked) return finish_rcpt(server_policy::recipient_status::known, {}, rc.postmaster);
    const auto status = params_.policy.check_recipient(checking_->address);
    if (status == server_policy::recipient_status::ask) {
        next_ = next::check_recipient;   // the driver asks; on_recipient_checked goes on
        return;
    }
    finish_rcpt(status, {});
}

void server_fsm::on_recipient_checked(const event& ev) {
    if (!checking_) return;
    finish_rcpt(ev.status == server_policy::recipient_status::ask ? server_policy::recipient_status::unavailable
                                                                  : ev.status,
                ev.reason);
    process_input();
}

/// The end of RCPT once it is known whether the recipient exists (`note`: what the
/// directory said beside its answer, for the log).
void server_fsm::finish_rcpt(server_policy::recipient_status status, const std::string& note, bool postmaster) {
    auto rec = std::move(*checking_);
    checking_.reset();
    const auto domain = domain_of(rec.address);
    switch (status) {
    case server_policy::recipient_status::known:
    case server_policy::recipient_status::ask: break;
    case server_policy::recipient_status::unknown:
        if (!note.empty()) info(note);
        info(fmt::format("recipient {} unknown: {} is authoritative and does not list it", sanitise(rec.address),
                         sanitise(domain)));
        return send(replies::unknown_user());
    case server_policy::recipient_status::unavailable:
        info(fmt::format("recipient {}: {}; 451 4.4.3", sanitise(rec.address),
                         note.empty() ? std::string("the directory cannot answer") : note));
        return send(replies::directory_unavailable());
    }
    if (!note.empty()) info(note);
    if (params_.explain_decisions) {
        const auto& accepted = params_.policy.accepted_domains;
        info(fmt::format("recipient {} taken: {}", sanitise(rec.address),
                         postmaster                                                         ? "postmaster"
                         : std::find(accepted.begin(), accepted.end(), domain) != accepted.end() ? "accepted domain"
                                                                                  : "relay permitted (accept_any_recipient)"));
    }
    envelope_.recipients.push_back(std::move(rec));
    send(replies::recipient_ok());
}

void server_fsm::on_data(const command&) {
    if (!mail_given_) return send_error(replies::mail_first());
    if (envelope_.recipients.empty()) return send_error(replies::no_valid_recipients());
    const auto& p = params_.policy;
    data_.emplace(dot_limits{p.max_message_size, p.max_header_size, p.max_hop_count});
    // Our Received: header goes first, written now as Postfix's smtpd does at DATA; the
    // body is read in behind it. SIZE= sizes the buffer (within max_message_size).
    // SIZE= is the client's word, not a reason to reserve memory: never more than one chunk.
    constexpr std::uint64_t default_expected = 64 * 1024;
    const auto cap = p.body_chunk_size > 0 ? std::min(p.body_chunk_size, p.max_message_size) : p.max_message_size;
    const auto expected = std::min<std::uint64_t>(declared_size_.value_or(default_expected), cap);
    data_->begin_with(received_header(), static_cast<std::size_t>(expected) + 1024);
    in_data_ = true;
    send(replies::start_data());
}

std::size_t server_fsm::feed_data(std::string_view bytes) {
    const auto used = data_->feed(bytes);
    const auto chunk = params_.policy.body_chunk_size;
    if (chunk > 0 && !data_->done() && data_->buffered() >= chunk) body_chunk_ += data_->take_buffered();
    return used;
}

void server_fsm::finish_data() {
    const auto verdict = data_->verdict();
    const auto size = data_->size();
    const auto hops = data_->received_headers();
    if (verdict != data_verdict::ok) {
        info(fmt::format("message rejected: {} ({} octets, {} Received: headers)", to_string(verdict), size, hops));
        switch (verdict) {
        case data_verdict::too_big: send(replies::message_too_big()); break;
        case data_verdict::header_too_big: send(replies::header_too_big()); break;
        case data_verdict::too_many_hops: send(replies::too_many_hops()); break;
        default: send(replies::bad_message_content()); break;
        }
        reset_transaction();
        after_transaction();
        return;
    }
    ++transactions_;
    envelope_.received_at = params_.clock();
    envelope_.tls_optional = data_->tls_required_no();
    commit_body_ = data_->take_body();   // begins with our Received: header
    data_.reset();
    info(fmt::format("message received: {} octets, {} recipients", size, envelope_.recipients.size()));
    committing_ = true;
    next_ = next::commit;
}

void server_fsm::on_rset(const command&) {
    reset_transaction();
    send(replies::reset_ok());
    after_transaction();
}

void server_fsm::on_noop(const command&) { send(replies::ok()); }

void server_fsm::on_quit(const command&) { close_with(replies::closing(params_.policy.hostname)); }

void server_fsm::on_vrfy(const command& c) {
    if (c.argument.empty()) return send_error(replies::argument_required());
    send(replies::cannot_verify());
}

void server_fsm::on_help(const command&) { send(replies::help()); }

void server_fsm::on_not_implemented(const command&) { send_error(replies::not_implemented()); }

void server_fsm::on_forbidden(const command& c) {
    info(fmt::format("{} is not an SMTP command: closing", c.verb));
    close_with(replies::forbidden_command(params_.policy.hostname));
}

void server_fsm::on_starttls(const command&) {
    if (params_.policy.tls != server_policy::tls_offer::starttls) return send_error(replies::not_implemented());
    if (tls_) return send_error(replies::tls_already_active());
    if (!params_.tls_available) return send(replies::tls_not_available());
    if (mail_given_) return send_error(replies::transaction_in_progress());
    send(replies::ready_to_start_tls());
    // RFC 3207 §4.2 / CVE-2011-0411: nothing sent before the handshake may be acted on.
    auto injected = lines_.take_rest();
    if (!injected.empty())
        info(fmt::format("discarded {} octets pipelined after STARTTLS", injected.size()));
    next_ = next::start_tls;
}

// --- Received: (RFC 5321 §4.4, RFC 3848, RFC 6531 §3.7.3) ---------------------------------

std::string server_fsm::received_header() const {
    std::string protocol = !esmtp_ ? "SMTP" : envelope_.smtputf8 ? "UTF8SMTP" : "ESMTP";
    if (tls_ && esmtp_) protocol += "S";
    std::string h = fmt::format("Received: from {} ([{}])\r\n\tby {} (Postern) with {} id {}.{}\r\n",
                                sanitise(helo_name_), sanitise(params_.client_ip), sanitise(params_.policy.hostname),
                                protocol, sanitise(params_.session_id.empty() ? "0" : params_.session_id),
                                transactions_ + 1);   // the transaction this header starts
    if (tls_) {
        const char* verify = tls_->certificate_verified ? "OK" : tls_->certificate_presented ? "FAIL" : "NO";
        h += fmt::format("\t(version={} cipher={} bits={} verify={})\r\n", sanitise(tls_->protocol),
                         sanitise(tls_->cipher), tls_->cipher_bits, verify);
    }
    if (envelope_.recipients.size() == 1) {
        std::string rcpt;
        for (char c : envelope_.recipients.front().address)
            rcpt.push_back(static_cast<unsigned char>(c) < 32 || c == '\x7f' ? '?' : c);
        h += fmt::format("\tfor <{}>;", rcpt);
    } else {
        h += "\t;";
    }
    h += fmt::format(" {}", rfc5322_date(envelope_.received_at == smtp::sys_time{} ? params_.clock() : envelope_.received_at));
    h += "\r\n";
    return h;
}

}  // namespace postern::smtp
