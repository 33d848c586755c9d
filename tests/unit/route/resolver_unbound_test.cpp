// The resolver against a real unbound on loopback, serving local zones under "test."
// (RFC 6761 §6.2). Started here, per test suite, with its own configuration and a free
// port; skipped when /usr/sbin/unbound is not installed. The system-wide unbound is never
// touched.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "route/resolver.hpp"

namespace postern::route {
namespace {

using namespace std::chrono_literals;

constexpr const char* unbound_binary = "/usr/sbin/unbound";

class temp_dir {
public:
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "postern-route-test-XXXXXX").string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        if (!std::getenv("POSTERN_TEST_KEEP")) std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

/// A loopback socket bound to a port the kernel chose.
class loopback_socket {
public:
    explicit loopback_socket(int type) : fd_(::socket(AF_INET, type | SOCK_CLOEXEC, 0)) {
        if (fd_ < 0) throw std::runtime_error("socket failed");
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = 0;
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
            throw std::runtime_error("bind failed");
        socklen_t length = sizeof address;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
    }
    ~loopback_socket() { ::close(fd_); }
    loopback_socket(const loopback_socket&) = delete;
    loopback_socket& operator=(const loopback_socket&) = delete;
    std::uint16_t port() const { return port_; }

private:
    int fd_;
    std::uint16_t port_ = 0;
};

/// A UDP and TCP port free on 127.0.0.1 right now (unbound listens on both).
std::uint16_t free_port() {
    for (int attempt = 0; attempt < 20; ++attempt) {
        std::uint16_t port = 0;
        {
            loopback_socket udp(SOCK_DGRAM);
            port = udp.port();
        }
        int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(port);
        const bool ok = ::bind(tcp, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
        ::close(tcp);
        if (ok) return port;
    }
    throw std::runtime_error("no free loopback port");
}

/// `unbound -d -c CONF` as a child process; ready once it logs "start of service".
class unbound_process {
public:
    unbound_process(const std::filesystem::path& config, std::chrono::seconds startup_limit) {
        int out[2];
        if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
        pid_ = ::fork();
        if (pid_ < 0) throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::dup2(out[1], 1);
            ::dup2(out[1], 2);
            ::execl(unbound_binary, unbound_binary, "-d", "-c", config.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(out[1]);
        read_fd_ = out[0];
        wait_for_service(startup_limit);
        // Keep reading so that a chatty unbound never blocks on a full pipe.
        drainer_ = std::thread([this] {
            char buffer[4096];
            ssize_t n;
            while ((n = ::read(read_fd_, buffer, sizeof buffer)) > 0) {
                std::lock_guard lock(log_mutex_);
                log_.append(buffer, static_cast<std::size_t>(n));
            }
        });
    }

    ~unbound_process() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
        if (drainer_.joinable()) drainer_.join();
        if (read_fd_ >= 0) ::close(read_fd_);
    }

    std::string log() {
        std::lock_guard lock(log_mutex_);
        return log_;
    }

private:
    void wait_for_service(std::chrono::seconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (log_.find("start of service") == std::string::npos) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left <= 0ms) throw std::runtime_error("unbound did not start in time:\n" + log_);
            pollfd p{read_fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            char buffer[4096];
            const ssize_t n = ::read(read_fd_, buffer, sizeof buffer);
            if (n <= 0) throw std::runtime_error("unbound exited during start-up:\n" + log_);
            log_.append(buffer, static_cast<std::size_t>(n));
        }
    }

    pid_t pid_ = -1;
    int read_fd_ = -1;
    std::thread drainer_;
    std::mutex log_mutex_;
    std::string log_;
};

// The zones of the test server. servfail.test is refused by this server; a recursive
// client such as libunbound turns a refusing upstream into SERVFAIL for its caller.
constexpr const char* test_zones = R"(
  local-zone: "mx-order.test." static
  local-data: "mx-order.test. MX 10 mx1.mx-order.test."
  local-data: "mx-order.test. MX 10 mx1b.mx-order.test."
  local-data: "mx-order.test. MX 20 mx2.mx-order.test."
  local-data: "mx-order.test. MX 30 mx3.mx-order.test."
  local-data: "mx1.mx-order.test. A 127.0.0.11"
  local-data: "mx1b.mx-order.test. A 127.0.0.12"
  local-data: "mx2.mx-order.test. A 127.0.0.2"
  local-data: "mx2.mx-order.test. AAAA 2001:db8::2"
  local-data: "mx3.mx-order.test. A 127.0.0.3"

  local-zone: "nodata.test." static
  local-data: "nodata.test. A 127.0.0.20"
  local-data: "nodata.test. AAAA 2001:db8::20"

  local-zone: "servfail.test." refuse

  local-zone: "nullmx.test." static
  local-data: "nullmx.test. MX 0 ."

  local-zone: "self.test." static
  local-data: "self.test. MX 5 primary.self.test."
  local-data: "self.test. MX 10 mx.self.test."
  local-data: "self.test. MX 20 backup.self.test."
  local-data: "primary.self.test. A 127.0.0.30"
  local-data: "mx.self.test. A 127.0.0.31"
  local-data: "backup.self.test. A 127.0.0.32"

  local-zone: "loop.test." static
  local-data: "loop.test. MX 10 mx.self.test."
  local-data: "loop.test. MX 20 backup.self.test."

  local-zone: "alias.test." static
  local-data: "alias.test. MX 10 mx.alias.test."
  local-data: "mx.alias.test. CNAME real.alias.test."
  local-data: "real.alias.test. A 127.0.0.40"

  local-zone: "ipmx.test." static
  local-data: "ipmx.test. MX 10 192.0.2.1."
  local-data: "ipmx.test. MX 20 mx.ipmx.test."
  local-data: "mx.ipmx.test. A 127.0.0.50"

  local-zone: "halfbroken.test." static
  local-data: "halfbroken.test. MX 10 mx.servfail.test."
  local-data: "halfbroken.test. MX 20 mx.halfbroken.test."
  local-data: "mx.halfbroken.test. A 127.0.0.60"

  local-zone: "noaddress.test." static
  local-data: "noaddress.test. MX 10 mx.servfail.test."
  local-data: "noaddress.test. MX 20 gone.noaddress.test."

  local-zone: "bogus.test." static
  local-data: "bogus.test. MX 10 mx.bogus.test."
  local-data: "mx.bogus.test. A 127.0.0.70"

  local-zone: "dane.test." static
  local-data: "mx.dane.test. A 127.0.0.80"
  local-data: "_25._tcp.mx.dane.test. TLSA 3 1 1 abababababababababababababababababababababababababababababababab"
  local-data: "_25._tcp.mx.dane.test. TLSA 2 0 2 cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
  local-data: '_mta-sts.dane.test. TXT "v=STSv1; " "id=20261203;"'
)";

txt_answer resolve_txt_now(resolver& r, const std::string& name) {
    auto promise = std::make_shared<std::promise<txt_answer>>();
    auto future = promise->get_future();
    r.resolve_txt(name, [promise](txt_answer a) { promise->set_value(std::move(a)); });
    if (future.wait_for(60s) != std::future_status::ready) throw std::runtime_error("no TXT answer for " + name);
    return future.get();
}

tlsa_answer resolve_tlsa_now(resolver& r, const std::string& host) {
    auto promise = std::make_shared<std::promise<tlsa_answer>>();
    auto future = promise->get_future();
    r.resolve_tlsa(host, 25, [promise](tlsa_answer a) { promise->set_value(std::move(a)); });
    if (future.wait_for(60s) != std::future_status::ready) throw std::runtime_error("no TLSA answer for " + host);
    return future.get();
}

next_hops resolve_now(resolver& r, const std::string& domain, const std::vector<std::string>& own_names = {}) {
    auto promise = std::make_shared<std::promise<next_hops>>();
    auto future = promise->get_future();
    r.resolve(domain, own_names, [promise](next_hops hops) { promise->set_value(std::move(hops)); });
    if (future.wait_for(60s) != std::future_status::ready) throw std::runtime_error("no answer for " + domain);
    return future.get();
}

std::pair<host, std::string> resolve_host_now(resolver& r, const std::string& name) {
    auto promise = std::make_shared<std::promise<std::pair<host, std::string>>>();
    auto future = promise->get_future();
    r.resolve_host(name, [promise](host h, std::string error) { promise->set_value({std::move(h), std::move(error)}); });
    if (future.wait_for(60s) != std::future_status::ready) throw std::runtime_error("no answer for " + name);
    return future.get();
}

std::vector<std::string> host_names(const next_hops& hops) {
    std::vector<std::string> out;
    for (const auto& h : hops.hosts) out.push_back(h.name);
    return out;
}

std::vector<std::string> address_texts(const host& h) {
    std::vector<std::string> out;
    for (const auto& a : h.addresses) out.push_back(a.to_string());
    return out;
}

class resolver_with_unbound : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        if (::access(unbound_binary, X_OK) != 0) return;
        dir_ = new temp_dir;
        port_ = free_port();
        const auto config = dir_->path() / "unbound.conf";
        std::ofstream(config) << "server:\n"
                              << "  interface: 127.0.0.1\n"
                              << "  port: " << port_ << "\n"
                              << "  do-ip6: no\n"
                              << "  username: \"\"\n"
                              << "  chroot: \"\"\n"
                              << "  directory: \"" << dir_->path().string() << "\"\n"
                              << "  pidfile: \"" << (dir_->path() / "unbound.pid").string() << "\"\n"
                              << "  use-syslog: no\n"
                              << "  logfile: \"\"\n"
                              << "  verbosity: 1\n"
                              << "  num-threads: 1\n"
                              << test_zones;
        server_ = new unbound_process(config, 15s);
    }

    static void TearDownTestSuite() {
        shared_.reset();
        delete server_;
        server_ = nullptr;
        delete dir_;
        dir_ = nullptr;
    }

    void SetUp() override {
        if (server_ == nullptr) GTEST_SKIP() << unbound_binary << " is not installed";
    }

    static config::dns_section forward_to_test_server() {
        config::dns_section dns;
        dns.resolver = "127.0.0.1:" + std::to_string(port_);
        return dns;
    }

    static resolver& shared_resolver() {
        if (!shared_) shared_ = std::make_unique<resolver>(forward_to_test_server(), resolver_options{10s});
        return *shared_;
    }

    static inline temp_dir* dir_ = nullptr;
    static inline unbound_process* server_ = nullptr;
    static inline std::uint16_t port_ = 0;
    static inline std::unique_ptr<resolver> shared_;
};

TEST_F(resolver_with_unbound, mx_hosts_in_preference_order_with_random_ties) {
    std::set<std::string> first_choices;
    for (int i = 0; i < 40 && first_choices.size() < 2; ++i) {
        auto hops = resolve_now(shared_resolver(), "mx-order.test");
        ASSERT_EQ(hops.status, lookup_status::ok) << hops.reason;
        EXPECT_TRUE(hops.from_mx);
        EXPECT_EQ(hops.mx_status, dnssec::insecure);
        ASSERT_EQ(hops.hosts.size(), 4u);
        first_choices.insert(hops.hosts[0].name);
        std::set<std::string> tie{hops.hosts[0].name, hops.hosts[1].name};
        EXPECT_EQ(tie, (std::set<std::string>{"mx1.mx-order.test", "mx1b.mx-order.test"}));
        EXPECT_EQ(hops.hosts[2].name, "mx2.mx-order.test");
        EXPECT_EQ(hops.hosts[2].preference, 20);
        EXPECT_EQ(address_texts(hops.hosts[2]), (std::vector<std::string>{"127.0.0.2", "2001:db8::2"}));
        EXPECT_EQ(hops.hosts[3].name, "mx3.mx-order.test");
        EXPECT_EQ(address_texts(hops.hosts[3]), std::vector<std::string>{"127.0.0.3"});
    }
    // Equal preferences (10) are tried in random order (RFC 5321 §5.1): in 40 answers
    // both hosts come first at least once (chance of failing: 2^-39).
    EXPECT_EQ(first_choices.size(), 2u);
}

TEST_F(resolver_with_unbound, nodata_falls_back_to_a_and_aaaa) {
    auto hops = resolve_now(shared_resolver(), "NoData.test.");
    ASSERT_EQ(hops.status, lookup_status::ok) << hops.reason;
    EXPECT_FALSE(hops.from_mx);
    ASSERT_EQ(hops.hosts.size(), 1u);
    EXPECT_EQ(hops.hosts[0].name, "nodata.test");
    EXPECT_EQ(address_texts(hops.hosts[0]), (std::vector<std::string>{"127.0.0.20", "2001:db8::20"}));
}

TEST_F(resolver_with_unbound, nxdomain_is_no_such_domain) {
    auto hops = resolve_now(shared_resolver(), "absent.mx-order.test");
    EXPECT_EQ(hops.status, lookup_status::no_such_domain);
    EXPECT_EQ(hops.reason, "NXDOMAIN for absent.mx-order.test MX");
}

TEST_F(resolver_with_unbound, servfail_defers_naming_the_query) {
    auto hops = resolve_now(shared_resolver(), "servfail.test");
    EXPECT_EQ(hops.status, lookup_status::defer);
    EXPECT_EQ(hops.reason, "SERVFAIL for servfail.test MX");
    EXPECT_TRUE(hops.hosts.empty());
}

TEST_F(resolver_with_unbound, null_mx) {
    auto hops = resolve_now(shared_resolver(), "nullmx.test");
    EXPECT_EQ(hops.status, lookup_status::null_mx);
    EXPECT_TRUE(hops.hosts.empty());
}

TEST_F(resolver_with_unbound, own_preference_and_above_are_dropped) {
    auto hops = resolve_now(shared_resolver(), "self.test", {"MX.self.test."});
    ASSERT_EQ(hops.status, lookup_status::ok) << hops.reason;
    EXPECT_EQ(host_names(hops), std::vector<std::string>{"primary.self.test"});

    auto loop = resolve_now(shared_resolver(), "loop.test", {"mx.self.test"});
    EXPECT_EQ(loop.status, lookup_status::defer);
    EXPECT_EQ(loop.reason, "mail for loop.test loops back to myself");
}

TEST_F(resolver_with_unbound, mx_host_behind_a_cname_is_followed) {
    auto hops = resolve_now(shared_resolver(), "alias.test");
    ASSERT_EQ(hops.status, lookup_status::ok) << hops.reason;
    ASSERT_EQ(hops.hosts.size(), 1u);
    EXPECT_EQ(hops.hosts[0].name, "mx.alias.test");
    EXPECT_EQ(address_texts(hops.hosts[0]), std::vector<std::string>{"127.0.0.40"});
}

TEST_F(resolver_with_unbound, address_literal_mx_is_skipped) {
    auto hops = resolve_now(shared_resolver(), "ipmx.test");
    ASSERT_EQ(hops.status, lookup_status::ok) << hops.reason;
    EXPECT_EQ(host_names(hops), std::vector<std::string>{"mx.ipmx.test"});
}

TEST_F(resolver_with_unbound, mx_host_whose_lookups_fail_is_skipped) {
    auto hops = resolve_now(shared_resolver(), "halfbroken.test");
    ASSERT_EQ(hops.status, lookup_status::ok) << hops.reason;
    EXPECT_EQ(host_names(hops), std::vector<std::string>{"mx.halfbroken.test"});

    auto none = resolve_now(shared_resolver(), "noaddress.test");
    EXPECT_EQ(none.status, lookup_status::defer);
    EXPECT_NE(none.reason.find("no MX host of noaddress.test has an address"), std::string::npos) << none.reason;
    EXPECT_NE(none.reason.find("SERVFAIL for mx.servfail.test A"), std::string::npos) << none.reason;
    EXPECT_NE(none.reason.find("NXDOMAIN for gone.noaddress.test"), std::string::npos) << none.reason;
}

TEST_F(resolver_with_unbound, address_literal_domain_needs_no_dns) {
    auto hops = resolve_now(shared_resolver(), "[127.0.0.9]");
    ASSERT_EQ(hops.status, lookup_status::ok);
    EXPECT_EQ(address_texts(hops.hosts.at(0)), std::vector<std::string>{"127.0.0.9"});
    auto six = resolve_now(shared_resolver(), "[IPv6:2001:db8::9]");
    ASSERT_EQ(six.status, lookup_status::ok);
    EXPECT_EQ(address_texts(six.hosts.at(0)), std::vector<std::string>{"2001:db8::9"});
}

TEST_F(resolver_with_unbound, resolve_host_for_smart_hosts) {
    auto [named, error] = resolve_host_now(shared_resolver(), "mx2.mx-order.test");
    EXPECT_EQ(error, "");
    EXPECT_EQ(address_texts(named), (std::vector<std::string>{"127.0.0.2", "2001:db8::2"}));

    auto [literal, literal_error] = resolve_host_now(shared_resolver(), "127.0.0.1");
    EXPECT_EQ(literal_error, "");
    EXPECT_EQ(address_texts(literal), std::vector<std::string>{"127.0.0.1"});

    auto [missing, missing_error] = resolve_host_now(shared_resolver(), "absent.mx-order.test");
    EXPECT_TRUE(missing.addresses.empty());
    EXPECT_NE(missing_error.find("no address for absent.mx-order.test"), std::string::npos) << missing_error;
}

TEST_F(resolver_with_unbound, many_lookups_from_several_threads) {
    constexpr int threads = 4;
    constexpr int per_thread = 25;
    std::atomic<int> ok{0};
    std::atomic<int> answered{0};
    std::promise<void> all_done;
    std::mutex failures_mutex;
    std::set<std::string> failures;
    resolver& shared = shared_resolver();   // created here, not lazily by racing threads
    std::vector<std::thread> callers;
    for (int t = 0; t < threads; ++t) {
        callers.emplace_back([&] {
            for (int i = 0; i < per_thread; ++i) {
                shared.resolve(i % 2 ? "mx-order.test" : "nodata.test", {}, [&](next_hops hops) {
                    if (hops.status == lookup_status::ok)
                        ++ok;
                    else {
                        std::lock_guard lock(failures_mutex);
                        failures.insert(hops.reason);
                    }
                    if (++answered == threads * per_thread) all_done.set_value();
                });
            }
        });
    }
    for (auto& c : callers) c.join();
    ASSERT_EQ(all_done.get_future().wait_for(60s), std::future_status::ready);
    EXPECT_EQ(ok.load(), threads * per_thread);
    for (const auto& f : failures) ADD_FAILURE() << f;
}

TEST_F(resolver_with_unbound, bogus_answer_defers_with_a_trust_anchor_from_unbound_config) {
    // A DS anchor for bogus.test that no key of the (unsigned) test zone matches: every
    // answer from there must come back bogus, while the unsigned rest stays insecure.
    const auto config = dir_->path() / "client-unbound.conf";
    std::ofstream(config) << "server:\n"
                          << "  do-not-query-localhost: no\n"
                          << "  local-zone: \"test.\" transparent\n"
                          << "  trust-anchor: \"bogus.test. DS 12345 8 2 "
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n"
                          << "forward-zone:\n"
                          << "  name: \".\"\n"
                          << "  forward-addr: 127.0.0.1@" << port_ << "\n";
    config::dns_section dns;
    dns.unbound_config = config;
    resolver validating(dns, resolver_options{10s});

    auto bogus = resolve_now(validating, "bogus.test");
    EXPECT_EQ(bogus.status, lookup_status::defer);
    EXPECT_EQ(bogus.mx_status, dnssec::bogus);
    EXPECT_TRUE(bogus.reason.starts_with("DNSSEC-bogus answer for bogus.test MX")) << bogus.reason;

    auto insecure = resolve_now(validating, "nodata.test");
    ASSERT_EQ(insecure.status, lookup_status::ok) << insecure.reason;
    EXPECT_EQ(insecure.mx_status, dnssec::insecure);
}

TEST_F(resolver_with_unbound, without_the_transparent_test_zone_libunbound_answers_nxdomain_itself) {
    // Documents why the resolver sets `local-zone: "test." transparent`: an
    // unbound_config without it gets RFC 6761's NXDOMAIN from libunbound, never asking
    // the test server.
    const auto config = dir_->path() / "client-default-zones.conf";
    std::ofstream(config) << "server:\n"
                          << "  do-not-query-localhost: no\n"
                          << "forward-zone:\n"
                          << "  name: \".\"\n"
                          << "  forward-addr: 127.0.0.1@" << port_ << "\n";
    config::dns_section dns;
    dns.unbound_config = config;
    resolver plain(dns, resolver_options{10s});
    EXPECT_EQ(resolve_now(plain, "mx-order.test").status, lookup_status::no_such_domain);
}

TEST(resolver_timeouts, a_silent_server_defers_with_timeout_within_the_bound) {
    loopback_socket silent(SOCK_DGRAM);   // bound, never read: queries vanish
    config::dns_section dns;
    dns.resolver = "127.0.0.1:" + std::to_string(silent.port());
    resolver r(dns, resolver_options{700ms});
    const auto started = std::chrono::steady_clock::now();
    auto hops = resolve_now(r, "slow.test");
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(hops.status, lookup_status::defer);
    EXPECT_EQ(hops.reason, "timeout for slow.test MX");
    EXPECT_GE(took, 650ms);
    EXPECT_LT(took, 5s);
}

TEST(resolver_timeouts, stopping_answers_every_open_lookup_once) {
    loopback_socket silent(SOCK_DGRAM);
    config::dns_section dns;
    dns.resolver = "127.0.0.1:" + std::to_string(silent.port());
    auto r = std::make_unique<resolver>(dns, resolver_options{60s});
    std::atomic<int> calls{0};
    std::string reason;
    r->resolve("slow.test", {}, [&](next_hops hops) {
        reason = hops.reason;
        ++calls;
    });
    r.reset();   // joins the dispatcher thread, which answers before it ends
    EXPECT_EQ(calls.load(), 1);
    EXPECT_NE(reason.find("resolver stopped"), std::string::npos) << reason;
}

TEST(resolver_settings, system_mode_answers_localhost_without_the_network) {
    // No [dns] setting: resolv.conf, /etc/hosts and, when installed, the root trust
    // anchor. "localhost" is answered locally (hosts file, RFC 6761 §6.3), so this
    // stays on the machine.
    resolver system{config::dns_section{}, resolver_options{10s}};
    auto [h, error] = resolve_host_now(system, "localhost");
    EXPECT_EQ(error, "");
    ASSERT_FALSE(h.addresses.empty());
    EXPECT_TRUE(h.addresses.front().is_loopback()) << h.addresses.front().to_string();
}

TEST(resolver_settings, bad_settings_throw) {
    config::dns_section not_an_address;
    not_an_address.resolver = "dns.example.test:53";
    EXPECT_THROW(resolver{not_an_address}, std::runtime_error);

    config::dns_section bad_port;
    bad_port.resolver = "127.0.0.1:99999";
    EXPECT_THROW(resolver{bad_port}, std::runtime_error);

    config::dns_section missing_file;
    missing_file.unbound_config = "/nonexistent/postern-unbound.conf";
    EXPECT_THROW(resolver{missing_file}, std::runtime_error);
}

TEST_F(resolver_with_unbound, tlsa_records_come_back_with_their_fields_and_status) {
    auto a = resolve_tlsa_now(shared_resolver(), "mx.dane.test");
    ASSERT_EQ(a.what, tlsa_answer::kind::records) << a.reason;
    EXPECT_EQ(a.status, dnssec::insecure);   // no trust anchor here; tests/integration/dnssec_lab.py signs zones
    ASSERT_EQ(a.records.size(), 2u);
    std::sort(a.records.begin(), a.records.end(), [](const auto& x, const auto& y) { return x.usage < y.usage; });
    EXPECT_EQ(a.records[0].usage, 2);
    EXPECT_EQ(a.records[0].selector, 0);
    EXPECT_EQ(a.records[0].matching, 2);
    EXPECT_EQ(a.records[0].data, std::vector<std::uint8_t>(64, 0xcd));
    EXPECT_EQ(a.records[1].usage, 3);
    EXPECT_EQ(a.records[1].data, std::vector<std::uint8_t>(32, 0xab));

    EXPECT_EQ(resolve_tlsa_now(shared_resolver(), "mx.ipmx.test").what, tlsa_answer::kind::none);
    auto failed = resolve_tlsa_now(shared_resolver(), "mx.servfail.test");
    EXPECT_EQ(failed.what, tlsa_answer::kind::failed);
    EXPECT_NE(failed.reason.find("_25._tcp.mx.servfail.test TLSA"), std::string::npos) << failed.reason;
}

TEST_F(resolver_with_unbound, txt_strings_of_a_record_are_joined) {
    auto a = resolve_txt_now(shared_resolver(), "_mta-sts.dane.test");
    ASSERT_EQ(a.what, txt_answer::kind::records) << a.reason;
    EXPECT_EQ(a.texts, std::vector<std::string>{"v=STSv1; id=20261203;"});
    EXPECT_EQ(resolve_txt_now(shared_resolver(), "_mta-sts.ipmx.test").what, txt_answer::kind::none);
    EXPECT_EQ(resolve_txt_now(shared_resolver(), "_mta-sts.servfail.test").what, txt_answer::kind::failed);
}

TEST(resolver_settings, forwarder_forms_are_accepted) {
    for (const char* text : {"127.0.0.1", "127.0.0.1:5302", "::1", "[::1]:5302"}) {
        config::dns_section dns;
        dns.resolver = text;
        EXPECT_NO_THROW(resolver{dns}) << text;
    }
}

}  // namespace
}  // namespace postern::route
