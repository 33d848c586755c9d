// Unit tests for policy/tlsrpt_ledger: counting, periods that never overlap, persistence,
// and the RFC 8460 §4.4 report shape.
#include "policy/tlsrpt_ledger.hpp"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace postern::policy {
namespace {

using namespace std::chrono_literals;

const sys_time t0 = sys_time(std::chrono::seconds(1'800'000'000));

tlsrpt_session sts_session(std::string result, std::string mx = "mx1.example.test") {
    tlsrpt_session s;
    s.policy_domain = "example.test";
    s.policy_type = "sts";
    s.policy_strings = {"version: STSv1", "mode: enforce", "mx: *.example.test", "max_age: 86400"};
    s.mx_patterns = {"*.example.test"};
    s.receiving_mx = std::move(mx);
    s.receiving_ip = "192.0.2.1";
    s.result = std::move(result);
    return s;
}

TEST(tlsrpt_ledger, a_report_counts_successes_and_failures_per_policy_as_rfc_8460_writes_them) {
    tlsrpt_ledger ledger("", t0);
    for (int i = 0; i < 3; ++i) ledger.record(sts_session(""));
    ledger.record(sts_session("certificate-expired"));
    ledger.record(sts_session("certificate-expired"));
    ledger.record(sts_session("certificate-host-mismatch", "mx2.example.test"));
    tlsrpt_session none;
    none.policy_domain = "other.test";
    none.policy_type = "no-policy-found";
    none.receiving_mx = "mx.other.test";
    ledger.record(none);

    const auto period = ledger.current(t0 + 24h);
    const auto report = tlsrpt_report(period, "example.test", "Example Org", "mailto:tls@example.org", "r-1");
    EXPECT_EQ(report["organization-name"], "Example Org");
    EXPECT_EQ(report["date-range"]["start-datetime"], "2027-01-15T08:00:00Z");
    EXPECT_EQ(report["date-range"]["end-datetime"], "2027-01-16T08:00:00Z");
    EXPECT_EQ(report["contact-info"], "mailto:tls@example.org");
    EXPECT_EQ(report["report-id"], "r-1");
    ASSERT_EQ(report["policies"].size(), 1u);
    const auto& p = report["policies"][0];
    EXPECT_EQ(p["policy"]["policy-type"], "sts");
    EXPECT_EQ(p["policy"]["policy-domain"], "example.test");
    EXPECT_EQ(p["policy"]["mx-host"][0], "*.example.test");
    EXPECT_EQ(p["policy"]["policy-string"].size(), 4u);
    EXPECT_EQ(p["summary"]["total-successful-session-count"], 3);
    EXPECT_EQ(p["summary"]["total-failure-session-count"], 3);
    ASSERT_EQ(p["failure-details"].size(), 2u);
    EXPECT_EQ(p["failure-details"][0]["result-type"], "certificate-expired");
    EXPECT_EQ(p["failure-details"][0]["failed-session-count"], 2);
    EXPECT_EQ(p["failure-details"][0]["receiving-ip"], "192.0.2.1");

    const auto other = tlsrpt_report(period, "other.test", "Example Org", "c", "r-2");
    EXPECT_EQ(other["policies"][0]["policy"]["policy-type"], "no-policy-found");
    EXPECT_FALSE(other["policies"][0]["policy"].contains("policy-string"));
    EXPECT_FALSE(other["policies"][0].contains("failure-details"));
}

TEST(tlsrpt_ledger, closing_a_period_starts_the_next_at_the_same_instant_and_counts_nothing_twice) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("postern-tlsrpt-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto file = dir / "tlsrpt.json";
    {
        tlsrpt_ledger ledger(file, t0);
        ledger.record(sts_session(""));
        ledger.record(sts_session("validation-failure"));
        ledger.flush();
    }
    EXPECT_EQ(fs::status(file).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
    tlsrpt_ledger again(file, t0 + 1h);   // a restart keeps the open period and its counts
    auto first = again.close(t0 + 2h);
    EXPECT_EQ(first.start, t0);
    EXPECT_EQ(first.end, t0 + 2h);
    EXPECT_EQ(first.domains.at("example.test").begin()->second.successes, 1u);
    again.record(sts_session(""));
    auto second = again.close(t0 + 3h);
    EXPECT_EQ(second.start, t0 + 2h);
    EXPECT_EQ(second.domains.at("example.test").begin()->second.successes, 1u);
    EXPECT_TRUE(second.domains.at("example.test").begin()->second.failures.empty());
    tlsrpt_ledger after(file, t0 + 4h);   // the closed periods are gone from the file
    EXPECT_TRUE(after.current(t0 + 4h).empty());
    EXPECT_EQ(after.current(t0 + 4h).start, t0 + 3h);

    std::ofstream(file) << "[broken";
    EXPECT_TRUE(tlsrpt_ledger(file, t0).current(t0).empty());
    fs::remove_all(dir);
}

}  // namespace
}  // namespace postern::policy
