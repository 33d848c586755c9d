// net::server over real loopback sockets with an in-memory store (STYLE E12, second level).
// Ports come from the OS; every wait is bounded; nothing sleeps to synchronise.
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "net/connector_choice.hpp"
#include "net/server.hpp"
#include "support/memory_store.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
using namespace postern;

namespace {

using postern::test_support::memory_store;

// --- a throwaway server certificate --------------------------------------------------------------
struct key_and_certificate {
    EVP_PKEY* key;
    X509* cert;
};

key_and_certificate self_signed(const char* common_name) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
    return {key, cert};
}

void use(SSL_CTX* ctx, key_and_certificate kc) {
    SSL_CTX_use_certificate(ctx, kc.cert);
    SSL_CTX_use_PrivateKey(ctx, kc.key);
    X509_free(kc.cert);
    EVP_PKEY_free(kc.key);
}

std::shared_ptr<SSL_CTX> test_tls_context() {
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    use(ctx, self_signed("mx.test"));
    // Request a client certificate but complete the handshake without one (DESIGN §5).
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    return {ctx, SSL_CTX_free};
}

config::ip_range range(const char* network, unsigned prefix) {
    config::ip_range r;
    r.network = asio::ip::make_address(network);
    r.prefix_length = prefix;
    r.text = std::string(network) + "/" + std::to_string(prefix);
    return r;
}

config::configuration test_config() {
    config::configuration cfg;
    cfg.server.hostname = "mx.test";
    cfg.server.accepted_domains = {"example.test"};
    config::receive_connector rc;
    rc.name = "inbound";
    rc.bind = {config::endpoint{"127.0.0.1", 0, "127.0.0.1:0"}};
    rc.remote_ip_ranges = {range("0.0.0.0", 0), range("::", 0)};
    rc.tls = config::tls_mode::starttls;
    rc.max_message_size = 100000;
    cfg.receive_connectors.push_back(rc);
    config::send_connector out;        // a route for the accepted domain (nothing is delivered here)
    out.name = "outbound";
    out.address_spaces = {"*"};
    cfg.send_connectors.push_back(out);
    return cfg;
}

// --- a small blocking SMTP client with bounded waits -------------------------------------------
class client {
public:
    explicit client(const tcp::endpoint& server) : socket_(io_) {
        bool done = false;
        boost::system::error_code result;
        socket_.async_connect(server, [&](boost::system::error_code ec) { result = ec, done = true; });
        run_until(done);
        if (result) throw boost::system::system_error(result);
    }

    /// One whole reply (all lines of a multi-line reply); "EOF" when the server closed.
    std::string reply() {
        std::string out;
        for (;;) {
            bool done = false;
            boost::system::error_code result;
            auto handler = [&](boost::system::error_code ec, std::size_t) { result = ec, done = true; };
            if (tls_) asio::async_read_until(*tls_, buffer_, "\r\n", handler);
            else asio::async_read_until(socket_, buffer_, "\r\n", handler);
            run_until(done);
            if (result) return out.empty() ? "EOF" : out;
            std::istream in(&buffer_);
            std::string line;
            std::getline(in, line);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            out += line + "\n";
            if (line.size() >= 4 && line[3] == ' ') return out;
        }
    }

    void send(std::string_view bytes) {
        if (tls_) asio::write(*tls_, asio::buffer(bytes));
        else asio::write(socket_, asio::buffer(bytes));
    }
    std::string command(std::string_view line) {
        send(std::string(line) + "\r\n");
        return reply();
    }

    /// Closes the TCP connection, as a client does after 221.
    void close() {
        boost::system::error_code ignored;
        socket_.close(ignored);
    }

    void start_tls(const char* certificate_name = nullptr) {
        client_ctx_.reset(SSL_CTX_new(TLS_client_method()));
        if (certificate_name) use(client_ctx_.get(), self_signed(certificate_name));
        tls_.emplace(socket_, SSL_new(client_ctx_.get()));
        bool done = false;
        boost::system::error_code result;
        tls_->async_handshake(asio::ssl::stream_base::client, [&](boost::system::error_code ec) { result = ec, done = true; });
        run_until(done);
        if (result) throw boost::system::system_error(result);
    }

private:
    void run_until(bool& done) {
        io_.restart();
        const auto limit = std::chrono::steady_clock::now() + 20s;
        while (!done && std::chrono::steady_clock::now() < limit) io_.run_one_for(1s);
        if (!done) {
            socket_.cancel();
            io_.restart();
            io_.run_for(1s);
            ADD_FAILURE() << "client wait timed out";
        }
    }

    asio::io_context io_;
    tcp::socket socket_;
    asio::streambuf buffer_;
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> client_ctx_{nullptr, SSL_CTX_free};
    std::optional<asio::ssl::stream<tcp::socket&>> tls_;
};

// --- the server under test, on its own threads -------------------------------------------------------
class running_server {
public:
    explicit running_server(config::configuration cfg, std::shared_ptr<SSL_CTX> tls = test_tls_context(),
                            net::server_options options = {})
        : dir_(std::filesystem::temp_directory_path() /
               ("postern-net-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++))),
          log_(log::protocol_log_options{dir_, log::log_kind::receive}),
          server_(cfg, std::move(tls), store, log_, std::move(options)) {
        listeners = server_.start();
        runner_ = std::thread([this] { server_.run(); });
    }
    ~running_server() {
        stop(0s);
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }
    void stop(std::chrono::seconds grace) {
        if (!runner_.joinable()) return;
        server_.stop(grace);
        runner_.join();
    }
    tcp::endpoint endpoint(std::size_t i = 0) const { return listeners.at(i).endpoint; }
    std::string protocol_log() {
        log_.flush();
        std::string all;
        for (auto& f : std::filesystem::recursive_directory_iterator(dir_)) {
            if (!f.is_regular_file()) continue;
            std::ifstream in(f.path());
            std::stringstream ss;
            ss << in.rdbuf();
            all += ss.str();
        }
        return all;
    }

    memory_store store{memory_store::completion::worker_thread};
    std::vector<net::bound_listener> listeners;
    net::server& server() { return server_; }

private:
    static int& counter() {
        static int n = 0;
        return n;
    }
    std::filesystem::path dir_;
    log::protocol_log log_;
    net::server server_;
    std::thread runner_;
};

bool starts(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

TEST(server, accepts_one_message_and_logs_the_session) {
    running_server s(test_config());
    ASSERT_EQ(s.listeners.size(), 1u);
    EXPECT_NE(s.endpoint().port(), 0);
    client c(s.endpoint());
    EXPECT_EQ(c.reply(), "220 mx.test ESMTP Postern\n");
    EXPECT_TRUE(starts(c.command("EHLO client.test"), "250-mx.test\n"));
    EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "250 2.1.0 Sender OK\n");
    EXPECT_EQ(c.command("RCPT TO:<b@example.test>"), "250 2.1.5 Recipient OK\n");
    EXPECT_EQ(c.command("DATA"), "354 End data with <CR><LF>.<CR><LF>\n");
    EXPECT_EQ(c.command("Subject: t\r\n\r\nhello\r\n."), "250 2.0.0 OK queued as Q1\n");
    EXPECT_EQ(c.command("QUIT"), "221 2.0.0 mx.test Bye\n");
    EXPECT_EQ(c.reply(), "EOF");
    c.close();
    ASSERT_EQ(s.store.count(), 1u);
    auto [env, body] = s.store.message(0);
    EXPECT_EQ(env.recipients.at(0).address, "b@example.test");
    EXPECT_EQ(env.receive_connector, "inbound");
    EXPECT_TRUE(starts(body, "Received: from client.test ([127.0.0.1])"));
    s.stop(5s);
    auto log = s.protocol_log();
    EXPECT_NE(log.find(",+,"), std::string::npos);
    EXPECT_NE(log.find(",<,MAIL FROM:<a@client.test>"), std::string::npos);
    EXPECT_NE(log.find(",>,250 2.0.0 OK queued as Q1"), std::string::npos);
    EXPECT_NE(log.find(",-,"), std::string::npos);
    EXPECT_EQ(log.find("hello"), std::string::npos);          // bodies are never logged
}

TEST(server, flow_control_holds_the_next_command_while_delivery_is_behind) {
    std::atomic<int> asked{0};
    net::server_options options;
    // Behind for the first three looks, then caught up.
    options.delivery_behind = [&asked] { return ++asked <= 3; };
    running_server s(test_config(), test_tls_context(), options);
    client c(s.endpoint());
    c.reply();
    c.command("EHLO client.test");
    EXPECT_EQ(asked.load(), 0);                     // nothing accepted yet: no waiting
    c.command("MAIL FROM:<a@client.test>");
    c.command("RCPT TO:<b@example.test>");
    c.command("DATA");
    EXPECT_EQ(c.command("Subject: t\r\n\r\nhello\r\n."), "250 2.0.0 OK queued as Q1\n");   // not delayed
    // The next command waits until delivery has caught up, then is served as usual.
    EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "250 2.1.0 Sender OK\n");
    EXPECT_EQ(asked.load(), 4);
    c.command("QUIT");
    s.stop(5s);
}

TEST(server, flow_control_waits_at_most_in_flow_delay) {
    net::server_options options;
    options.delivery_behind = [] { return true; };   // never catches up
    options.in_flow_delay = std::chrono::milliseconds(50);
    running_server s(test_config(), test_tls_context(), options);
    client c(s.endpoint());
    c.reply();
    c.command("EHLO client.test");
    for (int i = 1; i <= 2; ++i) {
        EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "250 2.1.0 Sender OK\n");
        c.command("RCPT TO:<b@example.test>");
        c.command("DATA");
        EXPECT_EQ(c.command("Subject: t\r\n\r\nhello\r\n."), "250 2.0.0 OK queued as Q" + std::to_string(i) + "\n");
    }
    EXPECT_EQ(s.store.count(), 2u);
    c.command("QUIT");
    s.stop(5s);
}

TEST(server, starttls_discards_injected_commands_and_starts_over) {
    running_server s(test_config());
    client c(s.endpoint());
    c.reply();
    EXPECT_NE(c.command("EHLO client.test").find("250 STARTTLS"), std::string::npos);
    c.send("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
    EXPECT_EQ(c.reply(), "220 2.0.0 Ready to start TLS\n");
    c.start_tls();
    EXPECT_EQ(c.command("RCPT TO:<b@example.test>"), "503 5.5.1 Need MAIL command first\n");
    EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "503 5.5.1 Send EHLO or HELO first\n");
    auto ehlo = c.command("EHLO client.test");
    EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos);
    EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "250 2.1.0 Sender OK\n");
    EXPECT_EQ(c.command("RCPT TO:<b@example.test>"), "250 2.1.5 Recipient OK\n");
    EXPECT_EQ(c.command("DATA"), "354 End data with <CR><LF>.<CR><LF>\n");
    EXPECT_EQ(c.command("x\r\n."), "250 2.0.0 OK queued as Q1\n");
    EXPECT_EQ(c.command("QUIT"), "221 2.0.0 mx.test Bye\n");
    auto [env, body] = s.store.message(0);
    EXPECT_NE(body.find("with ESMTPS id"), std::string::npos);
    EXPECT_NE(body.find("verify=NO)"), std::string::npos);
    c.close();
    s.stop(5s);
    auto log = s.protocol_log();
    EXPECT_NE(log.find("octets pipelined after STARTTLS"), std::string::npos);
    EXPECT_NE(log.find("TLS protocol=TLSv1.3"), std::string::npos);
}

TEST(server, require_tls_refuses_mail_in_plaintext) {
    auto cfg = test_config();
    cfg.receive_connectors[0].require_tls = true;
    running_server s(cfg);
    client c(s.endpoint());
    c.reply();
    c.command("EHLO client.test");
    EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "530 5.7.0 Must issue a STARTTLS command first\n");
    EXPECT_EQ(c.command("STARTTLS"), "220 2.0.0 Ready to start TLS\n");
    c.start_tls();
    c.command("EHLO client.test");
    EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "250 2.1.0 Sender OK\n");
}

TEST(server, implicit_tls) {
    auto cfg = test_config();
    cfg.receive_connectors[0].tls = config::tls_mode::implicit;
    running_server s(cfg);
    client c(s.endpoint());
    c.start_tls();
    EXPECT_EQ(c.reply(), "220 mx.test ESMTP Postern\n");
    EXPECT_EQ(c.command("EHLO client.test").find("STARTTLS"), std::string::npos);
}

TEST(server, inactivity_timeout) {
    auto cfg = test_config();
    cfg.receive_connectors[0].connection_inactivity_timeout = 1s;
    running_server s(cfg);
    client c(s.endpoint());
    c.reply();
    EXPECT_EQ(c.reply(), "421 4.4.2 mx.test Timeout exceeded, closing connection\n");
    EXPECT_EQ(c.reply(), "EOF");
}

// The connector's own per-source limit applies inside [server] max_connections_per_source.
TEST(server, too_many_connections_from_one_source) {
    auto cfg = test_config();
    cfg.receive_connectors[0].max_inbound_connections_per_source = 1;
    running_server s(cfg);
    client first(s.endpoint());
    EXPECT_EQ(first.reply(), "220 mx.test ESMTP Postern\n");
    client second(s.endpoint());
    EXPECT_EQ(second.reply(), "421 4.7.0 mx.test Too many connections, try again later\n");
    EXPECT_EQ(second.reply(), "EOF");
    EXPECT_EQ(first.command("NOOP"), "250 2.0.0 OK\n");
    EXPECT_EQ(first.command("QUIT"), "221 2.0.0 mx.test Bye\n");
    EXPECT_EQ(first.reply(), "EOF");
}

TEST(server, every_session_from_one_source_counts_on_every_bind_connector_or_not) {
    auto cfg = test_config();
    cfg.server.max_connections_per_source = 3;
    cfg.receive_connectors[0].max_inbound_connections_per_source = 10;
    auto other = cfg.receive_connectors[0];
    other.name = "partners-only";
    other.remote_ip_ranges = {range("10.0.0.0", 8)};     // 127.0.0.1 matches no connector here
    cfg.receive_connectors.push_back(other);
    running_server s(cfg);
    client a(s.endpoint(0)), b(s.endpoint(0));
    EXPECT_EQ(a.reply(), "220 mx.test ESMTP Postern\n");
    EXPECT_EQ(b.reply(), "220 mx.test ESMTP Postern\n");
    client stranger(s.endpoint(1));
    EXPECT_EQ(stranger.reply(), "554 5.7.1 mx.test No SMTP service for this client\n");
    client fourth(s.endpoint(0));                         // 2 + 1 sessions from 127.0.0.1
    EXPECT_EQ(fourth.reply(), "421 4.7.0 mx.test Too many connections, try again later\n");
    EXPECT_EQ(fourth.reply(), "EOF");
    client fifth(s.endpoint(1));
    EXPECT_EQ(fifth.reply(), "421 4.7.0 mx.test Too many connections, try again later\n");
    EXPECT_EQ(fifth.reply(), "EOF");
    EXPECT_EQ(stranger.command("QUIT"), "221 2.0.0 mx.test Bye\n");
    EXPECT_EQ(stranger.reply(), "EOF");
    // The stranger's slot comes back once the server has seen it leave (bounded wait).
    bool admitted = false;
    for (int i = 0; i < 200 && !admitted; ++i) {
        client again(s.endpoint(0));
        const auto r = again.reply();
        admitted = r.rfind("220 ", 0) == 0;
        if (admitted) EXPECT_EQ(again.command("QUIT"), "221 2.0.0 mx.test Bye\n");
        else std::this_thread::sleep_for(10ms);          // polling the server's state, not synchronising
    }
    EXPECT_TRUE(admitted);
    EXPECT_EQ(a.command("NOOP"), "250 2.0.0 OK\n");
    // Refused connections never became sessions: the protocol log has no line about them.
    const auto log = s.protocol_log();
    EXPECT_EQ(log.find("connection limit"), std::string::npos) << log;
}

TEST(server, max_inbound_connections_counts_every_session) {
    auto cfg = test_config();
    cfg.server.max_inbound_connections = 2;
    cfg.receive_connectors[0].remote_ip_ranges = {range("10.0.0.0", 8)};   // nobody matches
    running_server s(cfg);
    client a(s.endpoint()), b(s.endpoint());
    EXPECT_EQ(a.reply(), "554 5.7.1 mx.test No SMTP service for this client\n");
    EXPECT_EQ(b.reply(), "554 5.7.1 mx.test No SMTP service for this client\n");
    client c(s.endpoint());
    EXPECT_EQ(c.reply(), "421 4.7.0 mx.test Too many connections, try again later\n");
}

TEST(server, a_client_that_matches_no_connector_is_closed_after_ten_seconds) {
    auto cfg = test_config();
    cfg.receive_connectors[0].remote_ip_ranges = {range("10.0.0.0", 8)};
    running_server s(cfg);
    client c(s.endpoint());
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(c.reply(), "554 5.7.1 mx.test No SMTP service for this client\n");
    EXPECT_EQ(c.reply(), "421 4.4.2 mx.test Timeout exceeded, closing connection\n");
    EXPECT_EQ(c.reply(), "EOF");
    const auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_GE(waited, 9s);
    EXPECT_LT(waited, 15s);
}

TEST(connector_choice, ipv6_sources_are_grouped_by_64) {
    auto group = [](const char* a) { return net::source_group(asio::ip::make_address(a)); };
    EXPECT_EQ(group("192.0.2.7"), "192.0.2.7");
    EXPECT_EQ(group("::ffff:192.0.2.7"), "192.0.2.7");
    EXPECT_EQ(group("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
    EXPECT_EQ(group("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
    EXPECT_NE(group("2001:db8:1:3::1"), group("2001:db8:1:2::1"));
}

TEST(server, client_outside_every_range_gets_554) {
    auto cfg = test_config();
    cfg.receive_connectors[0].remote_ip_ranges = {range("10.0.0.0", 8)};
    running_server s(cfg);
    client c(s.endpoint());
    EXPECT_EQ(c.reply(), "554 5.7.1 mx.test No SMTP service for this client\n");
    EXPECT_EQ(c.command("EHLO client.test"), "503 5.5.1 No SMTP service here, only QUIT\n");
    EXPECT_EQ(c.command("QUIT"), "221 2.0.0 mx.test Bye\n");
}

TEST(server, store_failure_is_452_and_nothing_acknowledged) {
    running_server s(test_config());
    s.store.fail_commits = true;
    client c(s.endpoint());
    c.reply();
    c.command("EHLO client.test");
    c.command("MAIL FROM:<a@client.test>");
    c.command("RCPT TO:<b@example.test>");
    c.command("DATA");
    EXPECT_EQ(c.command("x\r\n."), "452 4.3.1 Insufficient system storage\n");
    EXPECT_EQ(s.store.count(), 0u);
}

TEST(server, stop_lets_a_transaction_finish_then_says_421) {
    running_server s(test_config());
    client busy(s.endpoint());
    busy.reply();
    busy.command("EHLO client.test");
    EXPECT_EQ(busy.command("MAIL FROM:<a@client.test>"), "250 2.1.0 Sender OK\n");
    client idle(s.endpoint());
    idle.reply();
    s.server().stop(30s);
    EXPECT_EQ(idle.reply(), "421 4.3.2 mx.test Service shutting down, closing connection\n");
    EXPECT_EQ(busy.command("RCPT TO:<b@example.test>"), "250 2.1.5 Recipient OK\n");
    EXPECT_EQ(busy.command("DATA"), "354 End data with <CR><LF>.<CR><LF>\n");
    EXPECT_EQ(busy.command("x\r\n."), "250 2.0.0 OK queued as Q1\n");
    EXPECT_EQ(busy.reply(), "421 4.3.2 mx.test Service shutting down, closing connection\n");
    s.stop(30s);                                   // returns once every session has ended
    EXPECT_TRUE(s.server().stopped());
    EXPECT_EQ(s.store.count(), 1u);
}

TEST(server, stop_grace_over_cuts_a_slow_transaction) {
    running_server s(test_config());
    client slow(s.endpoint());
    slow.reply();
    slow.command("EHLO client.test");
    slow.command("MAIL FROM:<a@client.test>");
    s.stop(1s);
    EXPECT_EQ(slow.reply(), "421 4.3.2 mx.test Service shutting down, closing connection\n");
    EXPECT_EQ(s.store.count(), 0u);
}

TEST(connector_choice, most_specific_range_wins_and_mapped_addresses_are_ipv4) {
    auto cfg = test_config();
    auto narrow = cfg.receive_connectors[0];
    narrow.name = "partners";
    narrow.remote_ip_ranges = {range("192.0.2.0", 24)};
    cfg.receive_connectors.push_back(narrow);
    auto on_bind = net::connectors_on_bind(cfg, "127.0.0.1:0");
    ASSERT_EQ(on_bind.size(), 2u);
    EXPECT_EQ(net::choose_connector(cfg, on_bind, asio::ip::make_address("192.0.2.9")), 1u);
    EXPECT_EQ(net::choose_connector(cfg, on_bind, asio::ip::make_address("::ffff:192.0.2.9")), 1u);
    EXPECT_EQ(net::choose_connector(cfg, on_bind, asio::ip::make_address("198.51.100.1")), 0u);
    EXPECT_EQ(net::endpoint_text(tcp::endpoint(asio::ip::make_address("::ffff:192.0.2.9"), 25)), "192.0.2.9:25");
    EXPECT_EQ(net::endpoint_text(tcp::endpoint(asio::ip::make_address("2001:db8::1"), 25)), "[2001:db8::1]:25");
}

TEST(server, connectors_asking_for_port_0_each_get_a_port_of_their_own) {
    auto cfg = test_config();
    auto other = cfg.receive_connectors[0];
    other.name = "partners-only";
    other.remote_ip_ranges = {range("192.0.2.0", 24)};   // loopback clients match nothing here
    cfg.receive_connectors.push_back(other);
    running_server s(cfg);
    ASSERT_EQ(s.listeners.size(), 2u);
    EXPECT_NE(s.endpoint(0).port(), s.endpoint(1).port());
    EXPECT_EQ(s.listeners[0].connectors, std::vector<std::string>{cfg.receive_connectors[0].name});
    EXPECT_EQ(s.listeners[1].connectors, std::vector<std::string>{"partners-only"});
    client first(s.endpoint(0));
    EXPECT_EQ(first.reply().substr(0, 4), "220 ");
    client second(s.endpoint(1));
    EXPECT_EQ(second.reply().substr(0, 4), "554 ");     // its own connector, whose ranges do not match
}

TEST(server, mutual_tls_client_that_is_not_a_partner_gets_554) {
    auto cfg = test_config();
    auto& rc = cfg.receive_connectors[0];
    rc.require_tls = true;
    rc.auth_mechanisms = {config::auth_mechanism::mutual_tls};
    rc.partner_names = {"partner.test"};
    running_server s(cfg);
    client c(s.endpoint());
    c.reply();
    c.command("EHLO client.test");
    EXPECT_EQ(c.command("STARTTLS"), "220 2.0.0 Ready to start TLS\n");
    c.start_tls("partner.test");                 // right name, but chains to no trusted root
    EXPECT_EQ(c.command("EHLO client.test"), "554 5.7.0 Client certificate required\n");
    EXPECT_EQ(c.command("MAIL FROM:<a@client.test>"), "554 5.7.0 Client certificate required\n");
    EXPECT_EQ(c.command("QUIT"), "221 2.0.0 mx.test Bye\n");
    c.close();
    s.stop(5s);
    auto log = s.protocol_log();
    EXPECT_NE(log.find("client certificate subject="), std::string::npos);
    EXPECT_NE(log.find("verified=no"), std::string::npos);
    EXPECT_NE(log.find("verdict: not a partner (client certificate not verified"), std::string::npos);
}

namespace {

// An accepted domain that no send connector covers could only bounce: RCPT gets 451 4.4.4
// (smtp/server_fsm), and policy_for() hands the machine the list.
TEST(connector_choice, accepted_domains_without_a_send_connector_are_unrouted) {
    config::configuration cfg;
    cfg.server.accepted_domains = {"example.test", "mail.partner.test", "partner.test", "Other.Test"};
    config::send_connector subdomains;
    subdomains.name = "partner-subdomains";
    subdomains.address_spaces = {"*.partner.test"};
    cfg.send_connectors.push_back(subdomains);
    config::send_connector exact;
    exact.name = "example";
    exact.address_spaces = {"EXAMPLE.test."};
    cfg.send_connectors.push_back(exact);
    // Named as compared: lower case.
    EXPECT_EQ(net::unrouted_domains(cfg), (std::vector<std::string>{"partner.test", "other.test"}));

    config::send_connector everything;
    everything.name = "internet";
    everything.address_spaces = {"*"};
    cfg.send_connectors.push_back(everything);
    EXPECT_TRUE(net::unrouted_domains(cfg).empty());
    cfg.send_connectors.clear();
    EXPECT_EQ(net::policy_for(cfg, config::receive_connector{}).unrouted_domains,
              (std::vector<std::string>{"example.test", "mail.partner.test", "partner.test", "other.test"}));

    // A domain whose recipients only a list routes is covered; [[accepted_domain]] names count.
    config::accepted_domain shared;
    shared.name = "Corp.Test";
    cfg.accepted_domains.push_back(shared);
    cfg.server.accepted_domains.clear();
    EXPECT_EQ(net::unrouted_domains(cfg), (std::vector<std::string>{"corp.test"}));
    config::send_connector listed;
    listed.name = "to-exchange";
    listed.recipients = config::recipient_list::parse("alice@corp.test\n");
    cfg.send_connectors.push_back(listed);
    EXPECT_TRUE(net::unrouted_domains(cfg).empty());
}

TEST(connector_choice, authoritative_domains_check_recipients_and_postmaster_always_exists) {
    config::configuration cfg;
    config::accepted_domain corp;
    corp.name = "corp.test";
    corp.type = config::accepted_domain_type::authoritative;
    corp.recipients = config::recipient_list::parse("alice@corp.test\n");
    cfg.accepted_domains.push_back(corp);
    cfg.server.accepted_domains = {"relay.test"};
    const auto p = net::policy_for(cfg, config::receive_connector{});
    ASSERT_TRUE(p.check_recipient);
    using status = smtp::server_policy::recipient_status;
    EXPECT_EQ(p.check_recipient("Alice@CORP.test"), status::known);
    EXPECT_EQ(p.check_recipient("nobody@corp.test"), status::unknown);
    EXPECT_EQ(p.check_recipient("PostMaster@corp.test"), status::known);
    EXPECT_EQ(p.check_recipient("anyone@relay.test"), status::known);   // internal_relay
    EXPECT_EQ(p.accepted_domains, (std::vector<std::string>{"relay.test", "corp.test"}));
}

}  // namespace
