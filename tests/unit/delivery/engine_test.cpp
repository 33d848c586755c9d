// Unit tests for delivery/scheduler and delivery/engine: grouping, retry and bounce
// decisions as pure functions, then the engine against an in-memory store, a fake
// resolver and a small SMTP peer on a loopback port chosen by the OS.
#include "delivery/engine.hpp"

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "delivery/dsn.hpp"
#include "support/memory_store.hpp"
#include "delivery/scheduler.hpp"

namespace postern::delivery {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

// --- test doubles -------------------------------------------------------------------------

using postern::test_support::memory_store;

/// Polls `predicate` until it holds or `limit` passes: for engine counters, which are
/// updated after the store write that a test can wait on.
bool eventually(const std::function<bool()>& predicate, std::chrono::seconds limit = 20s) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!predicate()) {
        if (std::chrono::steady_clock::now() >= end) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

/// Answers every MX query with one host at a loopback address; null MX for "nullmx.test".
class fake_resolver : public next_hop_source {
public:
    void resolve(const std::string& domain, const std::vector<std::string>&,
                 std::function<void(route::next_hops)> done) override {
        route::next_hops hops;
        if (domain == "nullmx.test") {
            hops.status = route::lookup_status::null_mx;
        } else {
            hops.status = route::lookup_status::ok;
            hops.from_mx = true;
            route::host h;
            h.name = "mx." + domain;
            h.addresses.push_back(asio::ip::address_v4::loopback());
            hops.hosts.push_back(h);
        }
        done(hops);
    }
    void resolve_host(const std::string& name, std::function<void(route::host, std::string)> done) override {
        route::host h;
        h.name = name;
        h.addresses.push_back(asio::ip::address_v4::loopback());
        done(h, {});
    }
};

/// A small SMTP peer: every connection gets EHLO with PIPELINING off; RCPT answers depend
/// on the local part ("reject" -> 550, "later" -> 451, "full" -> 452 after the first).
class smtp_peer {
public:
    /// `dsn`: the EHLO reply lists DSN (RFC 3461); `smtputf8`: and SMTPUTF8 (RFC 6531).
    explicit smtp_peer(bool dsn = false, bool smtputf8 = false)
        : dsn_(dsn), smtputf8_(smtputf8), acceptor_(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
        thread_ = std::thread([this] { serve(); });
    }
    ~smtp_peer() {
        boost::system::error_code ec;
        stopping_ = true;
        // Unblock accept() with a connection of our own.
        tcp::socket s(io_);
        s.connect(acceptor_.local_endpoint(), ec);
        thread_.join();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
    std::vector<std::string> transactions() const {
        std::lock_guard lock(mutex_);
        return transactions_;
    }
    int connections() const { return connections_; }
    int finished_sessions() const { return finished_; }
    std::vector<std::string> mail_commands() const {
        std::lock_guard lock(mutex_);
        return mail_commands_;
    }
    /// What each DATA carried, as sent (dot-stuffed), without the final ".CRLF".
    std::vector<std::string> messages() const {
        std::lock_guard lock(mutex_);
        return messages_;
    }

private:
    void serve() {
        while (!stopping_) {
            tcp::socket s(io_);
            boost::system::error_code ec;
            acceptor_.accept(s, ec);
            if (ec || stopping_) return;
            ++connections_;
            session(s);
            ++finished_;
        }
    }
    void session(tcp::socket& s) {
        boost::system::error_code ec;
        asio::streambuf buf;
        auto say = [&](const std::string& text) { asio::write(s, asio::buffer(text), ec); };
        say("220 peer ESMTP\r\n");
        std::string rcpts;
        int accepted = 0;
        for (;;) {
            const auto n = asio::read_until(s, buf, "\r\n", ec);
            if (ec) return;
            std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n - 2);
            buf.consume(n);
            if (line.starts_with("EHLO"))
                say(std::string("250-peer\r\n") + (dsn_ ? "250-DSN\r\n" : "") + (smtputf8_ ? "250-SMTPUTF8\r\n" : "") +
                    "250 8BITMIME\r\n");
            else if (line.starts_with("MAIL")) {
                rcpts.clear();
                accepted = 0;
                {
                    std::lock_guard lock(mutex_);
                    mail_commands_.push_back(line);
                }
                say("250 2.1.0 ok\r\n");
            }
            else if (line.starts_with("RCPT")) {
                if (line.find("<reject") != std::string::npos) say("550 5.1.1 no such user\r\n");
                else if (line.find("<later") != std::string::npos) say("451 4.3.0 try later\r\n");
                else if (line.find("<full") != std::string::npos && accepted > 0) say("452 4.5.3 too many recipients\r\n");
                else { ++accepted; rcpts += line.substr(8) + " "; say("250 2.1.5 ok\r\n"); }
            } else if (line == "DATA") {
                say("354 go\r\n");
                const auto data = asio::read_until(s, buf, "\r\n.\r\n", ec);
                if (ec) return;
                std::string message(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + data - 3);
                buf.consume(buf.size());
                {
                    std::lock_guard lock(mutex_);
                    transactions_.push_back(rcpts);
                    messages_.push_back(std::move(message));
                }
                say("250 2.0.0 queued\r\n");
            } else if (line == "RSET") say("250 2.0.0 reset\r\n");
            else if (line == "QUIT") { say("221 bye\r\n"); return; }
            else say("500 5.5.2 what\r\n");
        }
    }

    bool dsn_;
    bool smtputf8_;
    asio::io_context io_;
    tcp::acceptor acceptor_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    std::atomic<int> connections_{0};
    std::atomic<int> finished_{0};
    mutable std::mutex mutex_;
    std::vector<std::string> transactions_;
    std::vector<std::string> mail_commands_;
    std::vector<std::string> messages_;
};

config::configuration config_with_smart_host(std::uint16_t port, const std::filesystem::path& log_dir) {
    config::configuration cfg;
    cfg.server.hostname = "mx.example.test";
    cfg.tls.keyring = log_dir / "no-keyring.p12";
    config::send_connector c;
    c.name = "to-partner";
    c.address_spaces = {"partner.test", "nullmx.test"};
    c.smart_hosts.push_back({"127.0.0.1", port, "127.0.0.1:" + std::to_string(port)});
    // QUIT as soon as the work is done: the test peer serves one connection at a time and
    // its destructor waits for the QUIT. The caching tests set their own time.
    c.connection_cache_time = std::chrono::seconds(0);
    cfg.send_connectors.push_back(c);
    cfg.log.dir = log_dir;
    cfg.queue.retry = {std::chrono::seconds(60)};
    cfg.debug.smtp_client_debug = true;
    return cfg;
}

smtp::envelope message_to(std::vector<std::string> rcpts, std::string from = "alice@example.test") {
    smtp::envelope env;
    env.mail_from = std::move(from);
    for (auto& r : rcpts) {
        smtp::recipient rr;
        rr.address = r;
        env.recipients.push_back(rr);
    }
    env.received_at = std::chrono::system_clock::now();
    return env;
}

const std::string body = "Subject: hello\r\nFrom: alice@example.test\r\n\r\nhi\r\n";

// --- pure decisions -----------------------------------------------------------------------

TEST(scheduler, groups_recipients_by_next_hop_and_skips_busy_ones) {
    config::configuration cfg;
    config::send_connector mx;
    mx.name = "internet";
    mx.address_spaces = {"*"};
    config::send_connector smart;
    smart.name = "to-partner";
    smart.address_spaces = {"partner.test", "*.partner.test"};
    smart.smart_hosts.push_back({"127.0.0.1", 2526, "127.0.0.1:2526"});
    cfg.send_connectors = {mx, smart};
    auto env = message_to({"a@partner.test", "b@sub.partner.test", "c@one.test", "d@two.test", "e@one.test"});
    env.id = "M1";
    const auto now = std::chrono::system_clock::now();
    auto p = plan_message(cfg, env, now);
    ASSERT_EQ(p.jobs.size(), 3u);
    EXPECT_EQ(p.jobs[0].where.connector, "to-partner");     // both partner domains, one smart-host connection
    EXPECT_EQ(p.jobs[0].recipients, (std::vector<std::size_t>{0, 1}));
    EXPECT_EQ(p.jobs[1].where, (destination{"internet", "one.test"}));
    EXPECT_EQ(p.jobs[1].recipients, (std::vector<std::size_t>{2, 4}));
    EXPECT_EQ(p.jobs[2].where, (destination{"internet", "two.test"}));

    env.recipients[2].next_attempt = now + 1h;              // not due
    env.recipients[0].state = smtp::recipient_state::delivered;
    auto later = plan_message(cfg, env, now, [](std::size_t i) { return i == 3; });
    ASSERT_EQ(later.jobs.size(), 2u);
    EXPECT_EQ(later.jobs[0].recipients, (std::vector<std::size_t>{1}));
    EXPECT_EQ(later.jobs[1].recipients, (std::vector<std::size_t>{4}));
}

TEST(scheduler, recipients_without_a_connector_are_unroutable) {
    config::configuration cfg;
    auto env = message_to({"a@nowhere.test"});
    auto p = plan_message(cfg, env, std::chrono::system_clock::now());
    EXPECT_TRUE(p.jobs.empty());
    ASSERT_EQ(p.unroutable.size(), 1u);
}

TEST(scheduler, results_become_states_retries_and_bounces) {
    config::queue_section q;
    q.retry = {std::chrono::seconds(60), std::chrono::seconds(300)};
    q.expire = 48h;
    auto env = message_to({"a@p.test"});
    env.id = "M1";
    const auto now = env.received_at + 10min;

    smtp::recipient r = env.recipients[0];
    recipient_result transient;
    transient.what = verdict::transient;
    transient.remote = smtp::reply{451, {4, 3, 0}, "try later"};
    EXPECT_EQ(apply_result(r, transient, env, q, now), decision::retry);
    EXPECT_EQ(r.attempts, 1u);
    EXPECT_EQ(r.state, smtp::recipient_state::pending);
    EXPECT_GE(r.next_attempt, now + 60s);
    EXPECT_LE(r.next_attempt, now + 66s);                   // up to 10% jitter
    EXPECT_EQ(r.last_reply, "451 4.3.0 try later");

    EXPECT_EQ(apply_result(r, transient, env, q, now), decision::retry);
    EXPECT_GE(r.next_attempt, now + 300s);

    recipient_result permanent;
    permanent.what = verdict::permanent;
    permanent.remote = smtp::reply{550, {5, 1, 1}, "no such user"};
    EXPECT_EQ(apply_result(r, permanent, env, q, now), decision::bounce);
    EXPECT_EQ(r.state, smtp::recipient_state::pending);   // failed only once the DSN is durable

    smtp::recipient old = env.recipients[0];
    EXPECT_EQ(apply_result(old, transient, env, q, env.received_at + 49h), decision::bounce);
    EXPECT_NE(old.last_reply.find("expired"), std::string::npos);
    EXPECT_NE(old.last_reply.find("451 4.3.0 try later"), std::string::npos);
    EXPECT_NE(old.last_reply.find("expired after 2d in the queue"), std::string::npos) << old.last_reply;
    // An expiry shorter than an hour is said as configured, not as "0h".
    auto short_queue = q;
    short_queue.expire = 3s;
    smtp::recipient brief = env.recipients[0];
    EXPECT_EQ(apply_result(brief, transient, env, short_queue, env.received_at + 4s), decision::bounce);
    EXPECT_NE(brief.last_reply.find("expired after 3s in the queue"), std::string::npos) << brief.last_reply;

    // A TLS-RPT report of ours is tried for a day at most (RFC 8460 §5.4).
    auto report = env;
    report.receive_connector = std::string(smtp::tls_report_origin);
    smtp::recipient late = report.recipients[0];
    EXPECT_EQ(apply_result(late, transient, report, q, report.received_at + 23h), decision::retry);
    EXPECT_EQ(apply_result(late, transient, report, q, report.received_at + 25h), decision::bounce);
    EXPECT_NE(late.last_reply.find("expired after 1d in the queue"), std::string::npos) << late.last_reply;

    recipient_result ok;
    ok.what = verdict::delivered;
    EXPECT_EQ(apply_result(old, ok, env, q, now), decision::done);
    EXPECT_EQ(old.state, smtp::recipient_state::delivered);
}

TEST(scheduler, delay_notice_once_and_never_to_the_null_sender) {
    config::queue_section q;
    q.delay_notice = 4h;
    auto env = message_to({"a@p.test"});
    env.recipients[0].attempts = 3;
    EXPECT_FALSE(delay_notice_due(env, q, env.received_at + 3h));
    EXPECT_TRUE(delay_notice_due(env, q, env.received_at + 5h));
    env.delay_notice_sent = true;
    EXPECT_FALSE(delay_notice_due(env, q, env.received_at + 5h));
    auto bounce = message_to({"a@p.test"}, "");
    bounce.recipients[0].attempts = 3;
    EXPECT_FALSE(delay_notice_due(bounce, q, bounce.received_at + 5h));
}

TEST(dsn, failure_report_is_rfc3464_multipart_from_the_null_sender) {
    auto env = message_to({"bob@partner.test"});
    env.id = "M1";
    env.envid = "ENV-1";
    auto dsn = build_dsn(env, {{"bob@partner.test", "rfc822;bob@partner.test", "5.1.1", "550 5.1.1 no such user", "mx.partner.test"}},
                         dsn_kind::failure, "mx.example.test", header_section(body), std::chrono::system_clock::now(),
                         50 * 1024);
    EXPECT_EQ(dsn.envelope.mail_from, "");
    ASSERT_EQ(dsn.envelope.recipients.size(), 1u);
    EXPECT_EQ(dsn.envelope.recipients[0].address, "alice@example.test");
    const auto& b = dsn.body;
    EXPECT_NE(b.find("Content-Type: multipart/report; report-type=delivery-status;"), std::string::npos);
    EXPECT_NE(b.find("Content-Type: message/delivery-status"), std::string::npos);
    EXPECT_NE(b.find("Reporting-MTA: dns; mx.example.test"), std::string::npos);
    EXPECT_NE(b.find("Original-Envelope-Id: ENV-1"), std::string::npos);
    EXPECT_NE(b.find("Final-Recipient: rfc822; bob@partner.test"), std::string::npos);
    EXPECT_NE(b.find("Action: failed"), std::string::npos);
    EXPECT_NE(b.find("Status: 5.1.1"), std::string::npos);
    EXPECT_NE(b.find("Remote-MTA: dns; mx.partner.test"), std::string::npos);
    EXPECT_NE(b.find("Diagnostic-Code: smtp; 550 5.1.1 no such user"), std::string::npos);
    EXPECT_NE(b.find("Content-Type: text/rfc822-headers"), std::string::npos);
    EXPECT_NE(b.find("Subject: hello"), std::string::npos);
    EXPECT_EQ(b.find("\r\nhi\r\n"), std::string::npos);     // headers only, not the body
    EXPECT_EQ(b.find("\n\n"), std::string::npos);           // CRLF lines only
}

// --- the engine ---------------------------------------------------------------------------

class engine_test : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("postern-engine-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        send_log_ = std::make_unique<log::protocol_log>(log::protocol_log_options{dir_, log::log_kind::send});
    }
    void TearDown() override {
        engine_.reset();
        send_log_.reset();
        std::filesystem::remove_all(dir_);
    }
    void start(const config::configuration& cfg) {
        engine_options options;
        options.poll_interval = 1s;
        engine_ = std::make_unique<engine>(cfg, store_, resolver_, std::make_shared<client_tls_material>(), *send_log_,
                                           options);
        engine_->start();
    }
    std::string send_log_text() {
        send_log_->flush();
        std::string all;
        for (const auto& f : std::filesystem::recursive_directory_iterator(dir_)) {
            if (!f.is_regular_file()) continue;
            std::ifstream in(f.path());
            all += std::string(std::istreambuf_iterator<char>(in), {});
        }
        return all;
    }

    std::filesystem::path dir_;
    memory_store store_;
    fake_resolver resolver_;
    std::unique_ptr<log::protocol_log> send_log_;
    std::unique_ptr<engine> engine_;
};

TEST_F(engine_test, delivers_and_removes_the_message) {
    smtp_peer peer;
    const auto id = store_.add(message_to({"bob@partner.test", "carol@partner.test"}), body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    ASSERT_EQ(peer.transactions().size(), 1u);                   // one transaction for both
    EXPECT_EQ(peer.transactions()[0], "<bob@partner.test> <carol@partner.test> ");
    EXPECT_TRUE(eventually([&] { return engine_->stats().delivered == 2u; })) << engine_->stats().delivered;
    engine_->stop(5s);
    const auto log = send_log_text();
    EXPECT_NE(log.find("RCPT TO:<carol@partner.test>"), std::string::npos);
    EXPECT_NE(log.find("TLS not used"), std::string::npos);
}

TEST_F(engine_test, wake_sends_new_mail_at_once) {
    smtp_peer peer;
    auto cfg = config_with_smart_host(peer.port(), dir_);
    start(cfg);
    const auto id = store_.add(message_to({"bob@partner.test"}), body);
    engine_->wake();
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
}

TEST_F(engine_test, partial_failure_bounces_only_the_refused_recipient_and_retries_the_deferred) {
    smtp_peer peer;
    const auto id = store_.add(message_to({"bob@partner.test", "reject@partner.test", "later@partner.test"}), body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) {
        auto env = s.load_envelope(id);
        return env && env->recipients[1].state == smtp::recipient_state::failed &&
               env->recipients[2].attempts == 1;
    }));
    auto env = *store_.load_envelope(id);
    EXPECT_EQ(env.recipients[0].state, smtp::recipient_state::delivered);
    EXPECT_EQ(env.recipients[2].state, smtp::recipient_state::pending);
    EXPECT_EQ(env.recipients[2].last_reply, "127.0.0.1:" + std::to_string(peer.port()) + ": 451 4.3.0 try later");
    EXPECT_GT(env.recipients[2].next_attempt, std::chrono::system_clock::now() + 30s);
    // The DSN went to the sender, from the null sender, naming only the refused recipient.
    auto dsns = store_.committed();
    ASSERT_EQ(dsns.size(), 2u);
    EXPECT_EQ(dsns[1].mail_from, "");
    EXPECT_EQ(dsns[1].recipients[0].address, "alice@example.test");
    const auto dsn_body = store_.committed_body(1);
    EXPECT_NE(dsn_body.find("Final-Recipient: rfc822; reject@partner.test"), std::string::npos);
    EXPECT_NE(dsn_body.find("Diagnostic-Code: smtp; 127.0.0.1:"), std::string::npos);
    EXPECT_EQ(dsn_body.find("later@partner.test"), std::string::npos);
    engine_->stop(5s);
}

TEST_F(engine_test, too_many_recipients_go_on_in_a_new_transaction) {
    smtp_peer peer;
    const auto id = store_.add(message_to({"full1@partner.test", "full2@partner.test", "full3@partner.test"}), body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    EXPECT_EQ(peer.transactions().size(), 3u);      // the peer takes one recipient per transaction
    EXPECT_EQ(peer.connections(), 1);               // all on one connection (RSET between)
}

TEST_F(engine_test, null_sender_failure_makes_no_dsn) {
    smtp_peer peer;
    const auto id = store_.add(message_to({"reject@partner.test"}, ""), body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    EXPECT_EQ(store_.committed().size(), 1u);       // only the original
}

TEST_F(engine_test, undeliverable_bounce_goes_to_double_bounce_recipient_once) {
    smtp_peer peer;
    auto cfg = config_with_smart_host(peer.port(), dir_);
    // The report is refused too: it must be dropped, not reported again (no loop).
    cfg.queue.double_bounce_recipient = "reject@partner.test";
    const auto id = store_.add(message_to({"reject@partner.test"}, ""), body);
    start(cfg);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) {
        const auto all = s.committed();
        return all.size() == 2 && s.was_removed(all[1].id);
    }));
    auto all = store_.committed();
    ASSERT_EQ(all.size(), 2u);                      // the bounce and one report, never a third
    EXPECT_EQ(all[1].mail_from, "");
    ASSERT_EQ(all[1].recipients.size(), 1u);
    EXPECT_EQ(all[1].recipients[0].address, "reject@partner.test");
    EXPECT_EQ(all[1].receive_connector, "double-bounce");
    const auto report = store_.committed_body(1);
    EXPECT_NE(report.find("To: <reject@partner.test>"), std::string::npos) << report;
    EXPECT_NE(report.find("Final-Recipient: rfc822; reject@partner.test"), std::string::npos);
    engine_->stop(5s);
}

TEST_F(engine_test, null_mx_bounces_with_5_1_10) {
    auto cfg = config_with_smart_host(1, dir_);
    cfg.send_connectors[0].smart_hosts.clear();      // route by (fake) MX
    const auto id = store_.add(message_to({"x@nullmx.test"}), body);
    start(cfg);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    auto dsns = store_.committed();
    ASSERT_EQ(dsns.size(), 2u);
    EXPECT_EQ(dsns[1].mail_from, "");
    const auto dsn_text = store_.committed_body(1);
    EXPECT_NE(dsn_text.find("Status: 5.1.10"), std::string::npos) << dsn_text;
    EXPECT_NE(dsn_text.find("null MX"), std::string::npos);
}

TEST_F(engine_test, unreachable_smart_host_defers_with_the_reason) {
    tcp::endpoint closed;
    {
        asio::io_context io;
        tcp::acceptor a(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        closed = a.local_endpoint();
    }
    const auto id = store_.add(message_to({"bob@partner.test"}), body);
    start(config_with_smart_host(closed.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) {
        auto env = s.load_envelope(id);
        return env && env->recipients[0].attempts == 1;
    }));
    auto env = *store_.load_envelope(id);
    EXPECT_EQ(env.recipients[0].state, smtp::recipient_state::pending);
    EXPECT_NE(env.recipients[0].last_reply.find("failed"), std::string::npos) << env.recipients[0].last_reply;
    engine_->stop(5s);
}

TEST_F(engine_test, messages_left_by_a_restart_are_sent_at_start) {
    smtp_peer peer;
    auto env = message_to({"bob@partner.test"});
    env.recipients[0].attempts = 2;                       // tried before the restart
    env.recipients[0].next_attempt = std::chrono::system_clock::now() - 1s;
    const auto id = store_.add(env, body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
}

}  // namespace
}  // namespace postern::delivery

namespace postern::delivery {
namespace {

TEST_F(engine_test, expiry_bounces_with_the_last_reason) {
    smtp_peer peer;
    auto cfg = config_with_smart_host(peer.port(), dir_);
    cfg.queue.expire = std::chrono::seconds(60);
    auto env = message_to({"later@partner.test"});
    env.received_at = std::chrono::system_clock::now() - 2min;   // queued longer than expire
    const auto id = store_.add(env, body);
    start(cfg);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    auto all = store_.committed();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[1].mail_from, "");
    EXPECT_TRUE(eventually([&] { return engine_->stats().bounced == 1u; })) << engine_->stats().bounced;
    const auto dsn_body = store_.committed_body(1);
    EXPECT_NE(dsn_body.find("Status: 4.3.0"), std::string::npos) << dsn_body;
    EXPECT_NE(dsn_body.find("expired after"), std::string::npos);
    EXPECT_NE(dsn_body.find("451 4.3.0 try later"), std::string::npos);
}

TEST_F(engine_test, delay_notice_is_sent_once_while_the_message_stays_queued) {
    smtp_peer peer;
    auto cfg = config_with_smart_host(peer.port(), dir_);
    cfg.queue.delay_notice = std::chrono::seconds(60);
    auto env = message_to({"later@partner.test"});
    env.received_at = std::chrono::system_clock::now() - 2min;
    const auto id = store_.add(env, body);
    start(cfg);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) {
        auto e = s.load_envelope(id);
        return e && e->delay_notice_sent;
    }));
    auto e = *store_.load_envelope(id);
    EXPECT_EQ(e.recipients[0].state, smtp::recipient_state::pending);
    std::size_t notices = 0;
    for (const auto& c : store_.committed())
        if (c.mail_from.empty()) ++notices;
    EXPECT_EQ(notices, 1u);
    engine_->stop(5s);
}

TEST_F(engine_test, save_outbound_dir_keeps_a_private_copy_of_each_message_sent) {
    smtp_peer peer;
    auto cfg = config_with_smart_host(peer.port(), dir_);
    cfg.debug.save_outbound_dir = dir_ / "outbound";
    std::filesystem::create_directories(cfg.debug.save_outbound_dir);
    const auto id = store_.add(message_to({"bob@partner.test"}), body);
    start(cfg);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    engine_->stop(5s);
    std::vector<std::filesystem::path> files;
    for (const auto& f : std::filesystem::directory_iterator(cfg.debug.save_outbound_dir)) files.push_back(f.path());
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(std::filesystem::status(files[0]).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    std::ifstream in(files[0]);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), body);
}

TEST_F(engine_test, an_idle_connection_waits_for_more_mail_to_its_next_hop) {
    smtp_peer peer;
    auto cfg = config_with_smart_host(peer.port(), dir_);
    cfg.send_connectors[0].connection_cache_time = 300s;
    start(cfg);
    const auto first = store_.add(message_to({"bob@partner.test"}), body);
    engine_->committed(first);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(first); }));
    const auto second = store_.add(message_to({"carol@partner.test"}), body);
    engine_->committed(second);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(second); }));
    EXPECT_EQ(peer.transactions().size(), 2u);
    EXPECT_EQ(peer.connections(), 1);               // the second message took the waiting connection
    EXPECT_EQ(peer.finished_sessions(), 0);         // and it is still open, waiting for more
    // Stopping does not wait out the cache time: the idle connection QUITs at once.
    const auto before = std::chrono::steady_clock::now();
    engine_->stop(60s);
    EXPECT_LT(std::chrono::steady_clock::now() - before, 60s);
    EXPECT_TRUE(eventually([&] { return peer.finished_sessions() == 1; }));
}

TEST_F(engine_test, without_connection_caching_each_burst_opens_its_own_connection) {
    smtp_peer peer;
    auto cfg = config_with_smart_host(peer.port(), dir_);
    cfg.send_connectors[0].connection_cache_time = 0s;
    start(cfg);
    const auto first = store_.add(message_to({"bob@partner.test"}), body);
    engine_->committed(first);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(first); }));
    // With nothing more to send, the connection QUITs at once.
    ASSERT_TRUE(eventually([&] { return peer.finished_sessions() == 1; }));
    const auto second = store_.add(message_to({"carol@partner.test"}), body);
    engine_->committed(second);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(second); }));
    EXPECT_EQ(peer.transactions().size(), 2u);
    EXPECT_EQ(peer.connections(), 2);
}

TEST_F(engine_test, a_body_handed_over_at_commit_is_sent_without_reading_the_store) {
    smtp_peer peer;
    engine_options options;
    options.poll_interval = 1h;                     // no full scan but the first
    engine_ = std::make_unique<engine>(config_with_smart_host(peer.port(), dir_), store_, resolver_,
                                       std::make_shared<client_tls_material>(), *send_log_, options);
    engine_->start();
    ASSERT_TRUE(eventually([&] { return store_.list_calls() >= 1; }));   // the first scan read an empty queue
    const auto first = store_.add(message_to({"bob@partner.test"}), body);
    // Different from what the store holds, to show which one went out.
    const std::string handed = "Subject: handed over\r\n\r\nfrom memory\r\n";
    engine_->committed(*store_.load_envelope(first), handed);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(first); }));
    EXPECT_EQ(store_.body_loads(), 0);
    // Announced by id alone, a message is read from the store.
    const auto second = store_.add(message_to({"carol@partner.test"}), body);
    engine_->committed(second);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(second); }));
    EXPECT_EQ(store_.body_loads(), 1);
    engine_->stop(5s);
    ASSERT_EQ(peer.messages().size(), 2u);
    EXPECT_EQ(peer.messages()[0], handed);
    EXPECT_EQ(peer.messages()[1], body);
}

// --- RFC 3461 DSN parameters ----------------------------------------------------------------

smtp::envelope message_with_dsn_parameters(std::string rcpt, std::string notify) {
    auto env = message_to({std::move(rcpt)});
    env.ret = "HDRS";
    env.envid = "QQ314159";
    env.recipients[0].notify = std::move(notify);
    env.recipients[0].orcpt = "rfc822;" + env.recipients[0].address;
    return env;
}

TEST_F(engine_test, dsn_parameters_go_to_a_next_hop_that_advertises_dsn) {
    smtp_peer peer(/*dsn=*/true);
    const auto id = store_.add(message_with_dsn_parameters("bob@partner.test", "SUCCESS,FAILURE"), body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    ASSERT_EQ(peer.mail_commands().size(), 1u);
    EXPECT_NE(peer.mail_commands()[0].find("RET=HDRS"), std::string::npos) << peer.mail_commands()[0];
    EXPECT_NE(peer.mail_commands()[0].find("ENVID=QQ314159"), std::string::npos) << peer.mail_commands()[0];
    ASSERT_EQ(peer.transactions().size(), 1u);
    EXPECT_NE(peer.transactions()[0].find("NOTIFY=SUCCESS,FAILURE"), std::string::npos) << peer.transactions()[0];
    EXPECT_NE(peer.transactions()[0].find("ORCPT=rfc822;bob@partner.test"), std::string::npos) << peer.transactions()[0];
    EXPECT_EQ(store_.committed().size(), 1u);       // the next hop reports success itself
}

TEST_F(engine_test, a_next_hop_without_dsn_gets_no_parameters_and_success_is_reported_as_relayed) {
    smtp_peer peer;
    const auto id = store_.add(message_with_dsn_parameters("bob@partner.test", "SUCCESS"), body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id) && s.committed().size() == 2; }));
    ASSERT_EQ(peer.mail_commands().size(), 1u);
    EXPECT_EQ(peer.mail_commands()[0].find("RET="), std::string::npos) << peer.mail_commands()[0];
    EXPECT_EQ(peer.transactions()[0].find("NOTIFY="), std::string::npos) << peer.transactions()[0];
    const auto notice = store_.committed_body(1);
    EXPECT_EQ(store_.committed()[1].mail_from, "");
    EXPECT_NE(notice.find("Action: relayed"), std::string::npos) << notice;
    EXPECT_NE(notice.find("Original-Envelope-Id: QQ314159"), std::string::npos) << notice;
}

TEST_F(engine_test, notify_never_bounces_without_a_dsn) {
    smtp_peer peer;
    const auto id = store_.add(message_with_dsn_parameters("reject@partner.test", "NEVER"), body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    EXPECT_TRUE(eventually([&] { return engine_->stats().bounced == 1u; }));
    EXPECT_EQ(store_.committed().size(), 1u);       // only the original
}

TEST_F(engine_test, ret_full_returns_the_whole_message_in_the_bounce) {
    smtp_peer peer;
    auto env = message_with_dsn_parameters("reject@partner.test", "");
    env.ret = "FULL";
    const auto id = store_.add(env, body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id) && s.committed().size() == 2; }));
    const auto dsn = store_.committed_body(1);
    EXPECT_NE(dsn.find("message/rfc822"), std::string::npos) << dsn;
    EXPECT_NE(dsn.find("\r\n\r\nhi\r\n"), std::string::npos) << dsn;   // the original's body, not only its headers
}

// --- RFC 6531/6533: mail that travelled with SMTPUTF8 ----------------------------------------

const std::string utf8_body = "Subject: caf\xc3\xa9\r\nFrom: alice@partner.test\r\n\r\nhi\r\n";

smtp::envelope smtputf8_message_to(std::string rcpt) {
    auto env = message_to({std::move(rcpt)}, "alice@partner.test");   // the bounce goes back through the peer
    env.smtputf8 = true;
    env.body_8bit = true;
    env.ret = "FULL";
    return env;
}

TEST_F(engine_test, a_bounce_with_utf8_headers_goes_to_an_smtputf8_next_hop_with_smtputf8) {
    smtp_peer peer(/*dsn=*/false, /*smtputf8=*/true);
    const auto id = store_.add(smtputf8_message_to("reject@partner.test"), utf8_body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) {
        return s.was_removed(id) && s.committed().size() == 2 && s.was_removed(s.committed()[1].id);
    }));
    EXPECT_TRUE(store_.committed()[1].smtputf8);
    const auto dsn = store_.committed_body(1);
    EXPECT_NE(dsn.find("Content-Type: message/global-delivery-status\r\n"), std::string::npos) << dsn;
    EXPECT_NE(dsn.find("Content-Type: message/global\r\n"), std::string::npos) << dsn;
    const auto mails = peer.mail_commands();
    ASSERT_EQ(mails.size(), 2u);
    EXPECT_TRUE(mails[1].starts_with("MAIL FROM:<>")) << mails[1];
    EXPECT_NE(mails[1].find(" SMTPUTF8"), std::string::npos) << mails[1];
    ASSERT_EQ(peer.transactions().size(), 1u);   // the bounce, accepted
    EXPECT_EQ(peer.transactions()[0], "<alice@partner.test> ");
}

// The original cannot go to a next hop without SMTPUTF8 (5.6.7), and neither can its bounce,
// which returns the same UTF-8 headers: nothing is sent that the peer could not take.
TEST_F(engine_test, a_bounce_with_utf8_headers_is_not_sent_to_a_next_hop_without_smtputf8) {
    smtp_peer peer;
    const auto id = store_.add(smtputf8_message_to("bob@partner.test"), utf8_body);
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(store_.wait([&](const memory_store& s) {
        return s.was_removed(id) && s.committed().size() == 2 && s.was_removed(s.committed()[1].id);
    }));
    EXPECT_TRUE(store_.committed()[1].smtputf8);
    EXPECT_NE(store_.committed_body(1).find("Status: 5.6.7"), std::string::npos) << store_.committed_body(1);
    EXPECT_TRUE(peer.mail_commands().empty()) << peer.mail_commands()[0];
    EXPECT_TRUE(eventually([&] { return engine_->stats().bounced == 2u; })) << engine_->stats().bounced;
}

TEST_F(engine_test, ret_full_over_the_bounce_size_limit_returns_the_headers_only) {
    smtp_peer peer;
    auto env = message_with_dsn_parameters("reject@partner.test", "");
    env.ret = "FULL";
    const auto id = store_.add(env, body + std::string(2000, 'x') + "\r\n");
    auto cfg = config_with_smart_host(peer.port(), dir_);
    cfg.queue.bounce_size_limit = 1024;
    start(cfg);
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id) && s.committed().size() == 2; }));
    const auto dsn = store_.committed_body(1);
    EXPECT_EQ(dsn.find("message/rfc822"), std::string::npos) << dsn;
    EXPECT_NE(dsn.find("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\n"), std::string::npos) << dsn;
    EXPECT_EQ(dsn.find("xxxx"), std::string::npos) << dsn;
    EXPECT_NE(dsn.find("larger than 1024 bytes; only its headers are included"), std::string::npos) << dsn;
}

}  // namespace
}  // namespace postern::delivery

namespace postern::delivery {
namespace {

TEST_F(engine_test, a_deferred_message_comes_back_when_due_without_reading_the_whole_queue) {
    smtp_peer peer;
    auto later = message_to({"bob@partner.test"});
    later.recipients[0].attempts = 1;
    later.recipients[0].next_attempt = std::chrono::system_clock::now() + 2s;   // a retry, due soon
    const auto id = store_.add(later, body);
    auto much_later = message_to({"carol@partner.test"});
    much_later.recipients[0].attempts = 1;
    much_later.recipients[0].next_attempt = std::chrono::system_clock::now() + 1h;
    store_.add(much_later, body);
    start(config_with_smart_host(peer.port(), dir_));    // poll_interval 1 s
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    // One full read at start; after that only what came due was read (the index of due
    // times), though several ticks passed.
    EXPECT_EQ(store_.list_calls(), 1);
    EXPECT_EQ(peer.transactions().size(), 1u);
    engine_->stop(5s);
}

TEST(scheduler, next_due_is_the_earliest_retry_or_the_delay_notice) {
    config::queue_section q;
    q.delay_notice = std::chrono::hours(4);
    q.expire = std::chrono::hours(48);
    smtp::envelope env;
    env.id = "M";
    env.mail_from = "a@b.test";
    env.received_at = std::chrono::system_clock::time_point(std::chrono::hours(1000));
    smtp::recipient r;
    r.address = "x@y.test";
    r.attempts = 1;
    r.next_attempt = env.received_at + std::chrono::hours(10);
    env.recipients = {r, r};
    env.recipients[1].next_attempt = env.received_at + std::chrono::hours(2);
    EXPECT_EQ(next_due(env, q), env.received_at + std::chrono::hours(2));
    EXPECT_EQ(next_due(env, q, [](std::size_t i) { return i == 1; }), env.received_at + std::chrono::hours(4));   // notice
    env.delay_notice_sent = true;
    EXPECT_EQ(next_due(env, q, [](std::size_t i) { return i == 1; }), env.received_at + std::chrono::hours(10));
    env.recipients[0].state = smtp::recipient_state::delivered;
    EXPECT_EQ(next_due(env, q, [](std::size_t i) { return i == 1; }), std::nullopt);
    env.held = true;
    EXPECT_EQ(next_due(env, q), std::nullopt);
}

}  // namespace
}  // namespace postern::delivery

namespace postern::delivery {
namespace {

TEST_F(engine_test, a_result_the_store_could_not_record_is_held_and_never_sent_again) {
    smtp_peer peer;
    const auto id = store_.add(message_to({"bob@partner.test"}), body);
    store_.fail_writes = true;                    // the disk fails after the message was accepted
    start(config_with_smart_host(peer.port(), dir_));
    ASSERT_TRUE(eventually([&] { return peer.transactions().size() == 1 && store_.failed_changes() >= 1; }));
    // The next hop has it; the record failed. Several ticks and retries of the record
    // later, the message has not gone out again.
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.failed_changes() >= 1; }));
    const auto watch_until = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < watch_until) {
        ASSERT_EQ(peer.transactions().size(), 1u);
        std::this_thread::sleep_for(50ms);       // watching for a second delivery, not synchronising
    }
    auto env = store_.load_envelope(id);
    ASSERT_TRUE(env);
    EXPECT_EQ(env->recipients[0].state, smtp::recipient_state::pending);   // nothing written yet
    store_.fail_writes = false;                   // the disk works again: the held result goes in
    store_.down = false;
    ASSERT_TRUE(store_.wait([&](const memory_store& s) { return s.was_removed(id); }));
    EXPECT_EQ(peer.transactions().size(), 1u);
    engine_->stop(5s);
}

}  // namespace
}  // namespace postern::delivery
