// smtp/client_fsm.cpp: the send-side SMTP dialogue (see client_fsm.hpp).
#include "smtp/client_fsm.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "smtp/dot_writer.hpp"

namespace postern::smtp {

namespace {

verdict verdict_of(const smtp::reply& r) {
    if (r.code / 100 == 2) return verdict::delivered;
    if (r.code / 100 == 5) return verdict::permanent;
    return verdict::transient;     // 4xx, and a 3xx where none belongs: try again later
}

/// RFC 5321 §4.3.2: DATA goes on only with 354, and 4xx/5xx refuse it. Any other answer
/// (a 2xx above all) puts the dialogue out of step: taken as a refusal it would be read
/// as the message delivered though not one octet of it was sent.
bool out_of_step_data_reply(const smtp::reply& r) { return r.code != 354 && r.code / 100 < 4; }

}  // namespace

// --- the machine --------------------------------------------------------------------------

client_fsm::client_fsm(client_settings settings) : settings_(std::move(settings)) {
    tls_active_ = settings_.implicit_tls;
}

void client_fsm::sent(const std::string& line) { log_.push_back({transcript_line::kind::sent, line}); }

client_action client_fsm::read(wait_stage s, std::string out) {
    client_action a;
    a.what = client_action::kind::read;
    a.stage = s;
    a.out = std::move(out);
    return a;
}

std::string client_fsm::stage_name() const {
    switch (state_) {
    case state::start:
    case state::greeting: return "greeting";
    case state::ehlo: return "EHLO";
    case state::helo: return "HELO";
    case state::starttls: return "STARTTLS";
    case state::handshake: return "TLS handshake";
    case state::ready: return "idle";
    case state::pipelined: return "MAIL/RCPT/DATA";
    case state::mail: return "MAIL";
    case state::rcpt: return "RCPT";
    case state::data: return "DATA";
    case state::data_end:
    case state::dot_only: return "end of data";
    case state::rset: return "RSET";
    case state::quit: return "QUIT";
    case state::closed: return "closed";
    }
    return "unknown";
}

client_action client_fsm::resume(client_event&& ev) {
    if (ev.what != client_event::kind::send || state_ != state::ready) return resume(static_cast<const client_event&>(ev));
    client_action act = begin_transaction(std::move(ev.tx));
    act.log = std::move(log_);
    log_.clear();
    return act;
}

client_action client_fsm::resume(const client_event& ev) {
    client_action act = step(ev);
    act.log = std::move(log_);
    log_.clear();
    return act;
}

client_action client_fsm::step(const client_event& ev) {
    using k = client_event::kind;
    if (state_ == state::closed) {
        client_action a;
        a.what = client_action::kind::close;
        return a;
    }
    switch (ev.what) {
    case k::connected:
        state_ = state::greeting;
        return read(wait_stage::greeting);
    case k::bytes:
        parser_.feed(ev.data);
        return drain_replies();
    case k::tls_established:
        if (state_ != state::handshake) return fail(stage_name(), {}, "TLS established out of sequence");
        tls_active_ = true;
        caps_ = {};                       // RFC 3207 §4.2: forget everything learnt before TLS
        state_ = state::ehlo;
        sent("EHLO " + settings_.helo_name);
        return read(wait_stage::helo, "EHLO " + settings_.helo_name + "\r\n");
    case k::tls_failed:
        return fail("TLS handshake", {}, ev.data.empty() ? "TLS handshake failed" : ev.data, {.tls_setup = true});
    case k::closed: {
        std::string why = "connection closed by the next hop during " + stage_name();
        if (!ev.data.empty()) why += ": " + ev.data;
        if (state_ == state::quit) return close_quietly();
        return fail_transaction_and_close({}, why);
    }
    case k::timed_out:
        if (state_ == state::quit) return close_quietly();
        return fail_transaction_and_close({}, "timeout waiting for the reply to " + stage_name());
    case k::send:
        if (state_ != state::ready) return fail(stage_name(), {}, "transaction requested out of sequence");
        return begin_transaction(ev.tx);
    case k::quit:
        if (state_ != state::ready) return fail(stage_name(), {}, "QUIT requested out of sequence");
        state_ = state::quit;
        sent("QUIT");
        return read(wait_stage::quit, "QUIT\r\n");
    }
    return fail(stage_name(), {}, "unknown event");
}

client_action client_fsm::drain_replies() {
    for (;;) {
        smtp::reply r;
        std::string error;
        const auto st = parser_.next(r, &error);
        if (st == reply_parser::status::need_more) return read(current_wait());
        if (st == reply_parser::status::malformed)
            return fail_transaction_and_close({}, "malformed reply during " + stage_name() + ": " + error);
        for (auto& line : r.lines()) log_.push_back({transcript_line::kind::received, std::move(line)});
        client_action act = on_reply(r);
        // Keep going only while the machine just waits for more replies (a pipelined
        // group); anything else goes to the driver, which asks input_pending() first.
        if (act.what != client_action::kind::read || !act.out.empty() || !parser_.complete_reply_buffered())
            return act;
    }
}

wait_stage client_fsm::current_wait() const {
    switch (state_) {
    case state::start:
    case state::greeting: return wait_stage::greeting;
    case state::ehlo:
    case state::helo: return wait_stage::helo;
    case state::starttls:
    case state::handshake: return wait_stage::starttls;
    case state::pipelined:
        if (pipelined_seen_ == 0) return wait_stage::mail;
        if (tx_ && pipelined_seen_ <= tx_->recipients.size()) return wait_stage::rcpt;
        return wait_stage::data_start;
    case state::mail: return wait_stage::mail;
    case state::rcpt: return wait_stage::rcpt;
    case state::data: return wait_stage::data_start;
    case state::data_end:
    case state::dot_only: return wait_stage::data_end;
    case state::rset: return wait_stage::rset;
    case state::ready:
    case state::quit:
    case state::closed: return wait_stage::quit;
    }
    return wait_stage::quit;
}

client_action client_fsm::on_reply(const smtp::reply& r) {
    switch (state_) {
    case state::greeting:
        if (r.code != 220) return fail("greeting", r, "the next hop refused the session", {.permanent = r.permanent(), .say_quit = true});
        state_ = state::ehlo;
        sent("EHLO " + settings_.helo_name);
        return read(wait_stage::helo, "EHLO " + settings_.helo_name + "\r\n");
    case state::ehlo:
        if (r.code == 250) {
            caps_ = parse_ehlo(r);
            return after_hello();
        }
        if (r.permanent()) {              // RFC 5321 §4.1.4: an old server; try HELO
            state_ = state::helo;
            sent("HELO " + settings_.helo_name);
            return read(wait_stage::helo, "HELO " + settings_.helo_name + "\r\n");
        }
        return fail("EHLO", r, "EHLO refused", {.say_quit = true});
    case state::helo:
        if (r.code != 250) return fail("HELO", r, "HELO refused", {.permanent = r.permanent(), .say_quit = true});
        caps_ = {};
        return after_hello();
    case state::starttls:
        if (r.code != 220) return fail("STARTTLS", r, "STARTTLS refused", {.tls_setup = true, .say_quit = true});
        // RFC 3207 §4.2: anything the server sent after its 220 was not protected by TLS
        // and could have been injected by a man in the middle.
        discarded_ = parser_.buffered();
        parser_.clear();
        if (discarded_)
            log_.push_back({transcript_line::kind::info,
                            fmt::format("discarded {} octets received after the 220 to STARTTLS", discarded_)});
        state_ = state::handshake;
        {
            client_action a;
            a.what = client_action::kind::start_tls;
            a.stage = wait_stage::starttls;
            return a;
        }
    case state::rset:
        if (r.code != 250) return fail_transaction_and_close(r, "RSET refused");
        return send_mail();
    case state::mail:
        mail_reply_ = r;
        if (r.code == 421) return fail_transaction_and_close(r, {});
        if (r.code / 100 != 2) return finish_from_replies();
        next_rcpt_ = 0;
        return send_rcpt_or_data();
    case state::rcpt:
        rcpt_replies_[next_rcpt_] = r;
        if (r.code == 421) return fail_transaction_and_close(r, {});
        if (r.code / 100 == 2) ++accepted_;
        ++next_rcpt_;
        return send_rcpt_or_data();
    case state::pipelined:
        return on_pipelined_reply(r);
    case state::data:
        if (r.code == 354) return send_body();
        if (r.code == 421) return fail_transaction_and_close(r, {});
        if (out_of_step_data_reply(r))
            return fail_transaction_and_close({}, fmt::format("the next hop answered DATA with {} instead of 354", r.code));
        data_reply_ = r;
        return finish_from_replies();
    case state::data_end:
        if (r.code == 421) {
            // The message was refused with the connection; 421 is transient by definition.
            data_reply_ = r;
            auto act = finish_from_replies();
            state_ = state::closed;
            act.what = client_action::kind::close;
            return act;
        }
        data_reply_ = r;
        return finish_from_replies();
    case state::dot_only:
        // RFC 2920 §3.1: a 354 after every RCPT failed; the empty message we sent to close
        // the data phase is not a delivery, so its reply changes nothing.
        return finish_from_replies();
    case state::quit:
        return close_quietly();
    case state::start:
    case state::ready:
    case state::handshake:
    case state::closed:
        break;
    }
    return fail_transaction_and_close(r, "unexpected reply during " + stage_name());
}

client_action client_fsm::after_hello() {
    if (!tls_active_ && settings_.starttls != client_settings::starttls_use::never) {
        if (caps_.starttls) {
            state_ = state::starttls;
            sent("STARTTLS");
            return read(wait_stage::starttls, "STARTTLS\r\n");
        }
        if (settings_.starttls == client_settings::starttls_use::required)
            return fail("STARTTLS", {}, "STARTTLS not offered", {.tls_setup = true, .say_quit = true});
    }
    state_ = state::ready;
    client_action a;
    a.what = client_action::kind::idle;
    return a;
}

client_action client_fsm::begin_transaction(transaction tx) {
    auto refuse_all = [&](smtp::enhanced_code status, std::string reason) {
        std::vector<recipient_result> results;
        for (const auto& rcpt : tx.recipients) {
            recipient_result rr;
            rr.recipient = rcpt;
            rr.what = verdict::permanent;
            rr.status = status;
            rr.reason = reason;
            results.push_back(std::move(rr));
        }
        log_.push_back({transcript_line::kind::info, reason});
        client_action a;
        a.what = client_action::kind::transaction_done;
        a.results = std::move(results);
        return a;
    };
    // RFC 6152 §3: an 8-bit body must not go to a server without 8BITMIME; we do not
    // downgrade (that would change the signed bytes), so it bounces with 5.6.3.
    if (tx.body_8bit && !caps_.eightbitmime)
        return refuse_all({5, 6, 3}, "the next hop does not support 8BITMIME, needed for this 8-bit message");
    // RFC 6531 §3.2: without SMTPUTF8 at the next hop the message cannot go on: 5.6.7.
    if (tx.smtputf8 && !caps_.smtputf8)
        return refuse_all({5, 6, 7}, "the next hop does not support SMTPUTF8, needed for this message");
    // RFC 8689 §4.2.1: a REQUIRETLS message goes only to a hop that offers REQUIRETLS.
    if (tx.requiretls && !caps_.requiretls)
        return refuse_all({5, 7, 30}, "the next hop does not offer REQUIRETLS, needed for this message");
    // RFC 1870 §6: a message larger than the advertised SIZE would be refused anyway.
    if (caps_.size && caps_.size_limit > 0 && tx.body.size() > caps_.size_limit)
        return refuse_all({5, 3, 4}, fmt::format("message size {} exceeds the next hop's SIZE limit {}",
                                                  tx.body.size(), caps_.size_limit));
    rcpt_replies_.assign(tx.recipients.size(), std::nullopt);
    tx_ = std::move(tx);
    mail_reply_.reset();
    data_reply_.reset();
    next_rcpt_ = 0;
    accepted_ = 0;
    pipelined_seen_ = 0;
    if (used_) {                           // connection reuse: start from a clean slate
        state_ = state::rset;
        sent("RSET");
        return read(wait_stage::rset, "RSET\r\n");
    }
    return send_mail();
}

std::string client_fsm::mail_command() const {
    std::string line = "MAIL FROM:<" + tx_->mail_from + ">";
    if (caps_.size) line += fmt::format(" SIZE={}", tx_->body.size());
    if (tx_->body_8bit) line += " BODY=8BITMIME";
    if (tx_->smtputf8) line += " SMTPUTF8";
    if (tx_->requiretls) line += " REQUIRETLS";
    // RFC 3461 §4.3-4.4: only to a next hop that advertised DSN; RFC 3461 §5.2.2 (relay to
    // a non-DSN MTA) has us leave them off, and the engine owes NOTIFY=SUCCESS a notice.
    if (caps_.dsn) {
        if (!tx_->ret.empty()) line += " RET=" + tx_->ret;
        if (!tx_->envid.empty()) line += " ENVID=" + tx_->envid;
    }
    return line;
}

std::string client_fsm::rcpt_command(std::size_t index) const {
    std::string line = "RCPT TO:<" + tx_->recipients[index] + ">";
    if (caps_.dsn && index < tx_->recipient_params.size()) {   // RFC 3461 §4.1-4.2
        const auto& p = tx_->recipient_params[index];
        if (!p.notify.empty()) line += " NOTIFY=" + p.notify;
        if (!p.orcpt.empty()) line += " ORCPT=" + p.orcpt;
    }
    return line;
}

client_action client_fsm::send_mail() {
    used_ = true;
    const std::string mail = mail_command();
    sent(mail);
    if (caps_.pipelining) {
        // RFC 2920 §3.1: MAIL, every RCPT and DATA in one group; DATA is last because its
        // 354 must be seen before the body goes out.
        std::string out = mail + "\r\n";
        for (std::size_t i = 0; i < tx_->recipients.size(); ++i) {
            const std::string line = rcpt_command(i);
            sent(line);
            out += line + "\r\n";
        }
        sent("DATA");
        out += "DATA\r\n";
        state_ = state::pipelined;
        return read(wait_stage::mail, std::move(out));
    }
    state_ = state::mail;
    return read(wait_stage::mail, mail + "\r\n");
}

client_action client_fsm::send_rcpt_or_data() {
    if (next_rcpt_ < tx_->recipients.size()) {
        state_ = state::rcpt;
        const std::string line = rcpt_command(next_rcpt_);
        sent(line);
        return read(wait_stage::rcpt, line + "\r\n");
    }
    if (accepted_ == 0) return finish_from_replies();
    state_ = state::data;
    sent("DATA");
    return read(wait_stage::data_start, "DATA\r\n");
}

client_action client_fsm::on_pipelined_reply(const smtp::reply& r) {
    const std::size_t n = tx_->recipients.size();
    const std::size_t index = pipelined_seen_++;
    if (index == 0) mail_reply_ = r;
    else if (index <= n) {
        rcpt_replies_[index - 1] = r;
        if (r.code / 100 == 2 && mail_reply_ && mail_reply_->code / 100 == 2) ++accepted_;
    }
    if (r.code == 421) return fail_transaction_and_close(r, {});
    if (index <= n) return read(index < n ? wait_stage::rcpt : wait_stage::data_start);
    // The DATA reply: the group is complete.
    if (out_of_step_data_reply(r))
        return fail_transaction_and_close({}, fmt::format("the next hop answered DATA with {} instead of 354", r.code));
    const bool envelope_ok = mail_reply_->code / 100 == 2 && accepted_ > 0;
    if (r.code == 354) {
        if (envelope_ok) return send_body();
        // RFC 2920 §3.1: the server said 354 although nothing was accepted; end the data
        // phase with an empty message so the dialogue stays in step.
        state_ = state::dot_only;
        sent(".");
        return read(wait_stage::data_end, ".\r\n");
    }
    if (envelope_ok) data_reply_ = r;
    return finish_from_replies();
}

client_action client_fsm::send_body() {
    state_ = state::data_end;
    client_action a;
    a.what = client_action::kind::write_data;
    a.stage = wait_stage::data_end;
    // A large body goes out as it is stored plus ".CRLF", without a copy. A small one, or
    // one with many dot lines, is stuffed into one new buffer: one write, one TLS record
    // where it fits, and copying a few KB costs less than a second write.
    if (!tx_->body_file.empty()) {
        a.data_file = tx_->body_file;
        log_.push_back({transcript_line::kind::info,
                        fmt::format("message body: {} octets, streamed from its file", tx_->body_file_size)});
        sent(".");
        return a;
    }
    constexpr std::size_t max_pieces = 8;
    constexpr std::size_t copy_below = 64 * 1024;
    std::optional<std::vector<std::string_view>> pieces;
    if (tx_->body.size() >= copy_below) pieces = dot_stuffed_pieces(tx_->body, max_pieces);
    if (pieces) a.data = std::move(*pieces);
    else a.out = dot_stuff(tx_->body);
    log_.push_back({transcript_line::kind::info, fmt::format("message body: {} octets", tx_->body.size())});
    sent(".");
    return a;
}

std::vector<recipient_result> client_fsm::results_from_replies(const std::optional<smtp::reply>& connection_reply,
                                                              const std::string& reason) const {
    std::vector<recipient_result> results;
    if (!tx_) return results;
    for (std::size_t i = 0; i < tx_->recipients.size(); ++i) {
        recipient_result rr;
        rr.recipient = tx_->recipients[i];
        rr.next_hop_dsn = caps_.dsn;
        const auto& rcpt = rcpt_replies_[i];
        if (mail_reply_ && mail_reply_->code / 100 != 2) {
            rr.remote = mail_reply_;
            rr.what = verdict_of(*mail_reply_);
        } else if (rcpt && rcpt->code / 100 != 2) {
            rr.remote = rcpt;
            rr.what = verdict_of(*rcpt);
        } else if (rcpt && data_reply_) {
            rr.remote = data_reply_;
            rr.what = verdict_of(*data_reply_);
        } else {
            // The dialogue broke off before this recipient had its answer (421, timeout,
            // lost connection): nothing is known, so try again later.
            rr.remote = connection_reply;
            rr.what = verdict::transient;
            rr.reason = reason;
        }
        results.push_back(std::move(rr));
    }
    return results;
}

client_action client_fsm::finish_from_replies() {
    client_action a;
    a.what = client_action::kind::transaction_done;
    a.results = results_from_replies(std::nullopt, "no reply from the next hop");
    tx_.reset();
    state_ = state::ready;
    return a;
}

client_action client_fsm::fail(std::string stage, std::optional<smtp::reply> remote, std::string reason, session_ending how) {
    client_action a;
    a.what = client_action::kind::close;
    a.results = results_from_replies(remote, reason);
    session_failure f;
    f.stage = std::move(stage);
    f.remote = std::move(remote);
    f.reason = std::move(reason);
    f.permanent = how.permanent;
    f.tls_setup = how.tls_setup;
    a.failure = std::move(f);
    if (how.say_quit) {
        sent("QUIT");
        a.out = "QUIT\r\n";
    }
    tx_.reset();
    state_ = state::closed;
    return a;
}

client_action client_fsm::fail_transaction_and_close(const std::optional<smtp::reply>& remote,
                                                     const std::string& reason) {
    std::string why = reason;
    if (why.empty() && remote) why = "the next hop closed the session";
    // After a 421 the server closes (RFC 5321 §3.8); after a timeout or a broken line
    // there is nobody to say QUIT to.
    return fail(stage_name(), remote, why);
}

client_action client_fsm::close_quietly() {
    state_ = state::closed;
    client_action a;
    a.what = client_action::kind::close;
    return a;
}

}  // namespace postern::smtp
