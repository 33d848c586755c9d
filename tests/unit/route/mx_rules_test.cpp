// The MX rules of DESIGN.md §3 over parsed answers, without DNS:
// RFC 5321 §5.1 (order, ties, implicit MX, own preference), RFC 7505 (null MX), RFC 4035 §4.3.
#include <gtest/gtest.h>

#include <set>

#include <fmt/format.h>

#include "route/mx_rules.hpp"

namespace postern::route {
namespace {

using boost::asio::ip::make_address;

answer_outcome outcome(answer_kind kind, dnssec status = dnssec::insecure, std::string detail = {}) {
    return {kind, status, std::move(detail)};
}

mx_answer mx_data(std::vector<mx_record> records, dnssec status = dnssec::insecure) {
    return {outcome(answer_kind::data, status), std::move(records)};
}

address_answer addresses(std::vector<std::string> texts, dnssec status = dnssec::insecure) {
    address_answer answer{outcome(answer_kind::data, status), {}, {}};
    for (const auto& t : texts) answer.addresses.push_back(make_address(t));
    return answer;
}

address_answer no_data(dnssec status = dnssec::insecure) { return {outcome(answer_kind::nodata, status), {}, {}}; }

address_answer failed(answer_kind kind, std::string detail = {}) { return {outcome(kind, dnssec::insecure, detail), {}, {}}; }

host_answers v4(std::string a) { return {addresses({std::move(a)}), no_data()}; }

std::vector<std::string> names(const mx_plan& plan) {
    std::vector<std::string> out;
    for (const auto& h : plan.hosts) out.push_back(h.name);
    return out;
}

struct mx_rules : ::testing::Test {
    std::mt19937 tie_order{42};
    std::vector<std::string> own{"mx.self.test"};
};

TEST_F(mx_rules, hosts_in_preference_order) {
    auto plan = plan_from_mx("example.test", mx_data({{30, "mx3.example.test"}, {10, "mx1.example.test"},
                                                      {20, "mx2.example.test"}}),
                             own, tie_order);
    ASSERT_FALSE(plan.decided);
    EXPECT_TRUE(plan.from_mx);
    EXPECT_EQ(names(plan), (std::vector<std::string>{"mx1.example.test", "mx2.example.test", "mx3.example.test"}));
    EXPECT_EQ(plan.hosts[0].preference, 10);
    EXPECT_EQ(plan.hosts[2].preference, 30);
}

TEST_F(mx_rules, equal_preferences_come_in_random_order_but_never_before_a_lower_one) {
    mx_answer answer = mx_data({{10, "a.example.test"}, {10, "b.example.test"}, {10, "c.example.test"},
                                {5, "first.example.test"}, {20, "last.example.test"}});
    std::set<std::vector<std::string>> orders;
    for (unsigned seed = 0; seed < 200; ++seed) {
        std::mt19937 engine{seed};
        auto plan = plan_from_mx("example.test", answer, own, engine);
        ASSERT_EQ(plan.hosts.size(), 5u);
        EXPECT_EQ(plan.hosts.front().name, "first.example.test");
        EXPECT_EQ(plan.hosts.back().name, "last.example.test");
        orders.insert({plan.hosts[1].name, plan.hosts[2].name, plan.hosts[3].name});
    }
    EXPECT_EQ(orders.size(), 6u);   // all 3! orders of the tie occur
}

TEST_F(mx_rules, the_same_host_twice_is_tried_once_at_its_best_preference) {
    auto plan = plan_from_mx("example.test", mx_data({{20, "MX.example.test"}, {10, "mx.example.test."}}), own,
                             tie_order);
    ASSERT_EQ(plan.hosts.size(), 1u);
    EXPECT_EQ(plan.hosts[0].name, "mx.example.test");
    EXPECT_EQ(plan.hosts[0].preference, 10);
}

TEST_F(mx_rules, nodata_falls_back_to_the_domain_itself) {
    auto plan = plan_from_mx("NoData.test.", {outcome(answer_kind::nodata), {}}, own, tie_order);
    ASSERT_FALSE(plan.decided);
    EXPECT_FALSE(plan.from_mx);
    EXPECT_EQ(names(plan), std::vector<std::string>{"nodata.test"});
    auto hops = hops_from_addresses("nodata.test", plan,
                                    {{addresses({"192.0.2.10"}), addresses({"2001:db8::10"})}});
    ASSERT_EQ(hops.status, lookup_status::ok);
    EXPECT_FALSE(hops.from_mx);
    ASSERT_EQ(hops.hosts.size(), 1u);
    EXPECT_EQ(hops.hosts[0].name, "nodata.test");
    ASSERT_EQ(hops.hosts[0].addresses.size(), 2u);
    EXPECT_EQ(hops.hosts[0].addresses[0].to_string(), "192.0.2.10");   // A then AAAA
    EXPECT_EQ(hops.hosts[0].addresses[1].to_string(), "2001:db8::10");
}

TEST_F(mx_rules, nxdomain_is_no_such_domain) {
    auto plan = plan_from_mx("gone.test", {outcome(answer_kind::nxdomain), {}}, own, tie_order);
    ASSERT_TRUE(plan.decided);
    EXPECT_EQ(plan.decided->status, lookup_status::no_such_domain);
    EXPECT_EQ(plan.decided->reason, "NXDOMAIN for gone.test MX");
    EXPECT_TRUE(plan.hosts.empty());
}

TEST_F(mx_rules, servfail_defers_and_never_falls_back_to_addresses) {
    auto plan = plan_from_mx("broken.test", {outcome(answer_kind::failed, dnssec::insecure, "SERVFAIL"), {}}, own,
                             tie_order);
    ASSERT_TRUE(plan.decided);
    EXPECT_EQ(plan.decided->status, lookup_status::defer);
    EXPECT_EQ(plan.decided->reason, "SERVFAIL for broken.test MX");
    EXPECT_TRUE(plan.hosts.empty());
}

TEST_F(mx_rules, other_failures_name_their_cause) {
    auto refused = plan_from_mx("x.test", {outcome(answer_kind::failed, dnssec::insecure, "REFUSED"), {}}, own,
                                tie_order);
    EXPECT_EQ(refused.decided->reason, "REFUSED for x.test MX");
    auto timeout = plan_from_mx("x.test", {outcome(answer_kind::timed_out), {}}, own, tie_order);
    EXPECT_EQ(timeout.decided->status, lookup_status::defer);
    EXPECT_EQ(timeout.decided->reason, "timeout for x.test MX");
}

TEST_F(mx_rules, bogus_defers_even_with_records) {
    mx_answer bogus{outcome(answer_kind::bogus, dnssec::bogus, "signature expired"), {{10, "mx.evil.test"}}};
    auto plan = plan_from_mx("signed.test", bogus, own, tie_order);
    ASSERT_TRUE(plan.decided);
    EXPECT_EQ(plan.decided->status, lookup_status::defer);
    EXPECT_EQ(plan.decided->mx_status, dnssec::bogus);
    EXPECT_EQ(plan.decided->reason, "DNSSEC-bogus answer for signed.test MX (signature expired)");
}

TEST_F(mx_rules, null_mx_bounces) {
    auto plan = plan_from_mx("nullmx.test", mx_data({{0, ""}}), own, tie_order);
    ASSERT_TRUE(plan.decided);
    EXPECT_EQ(plan.decided->status, lookup_status::null_mx);
    EXPECT_NE(plan.decided->reason.find("null MX"), std::string::npos);
}

TEST_F(mx_rules, a_root_exchange_among_others_is_ignored_not_a_null_mx) {
    auto plan = plan_from_mx("mixed.test", mx_data({{0, ""}, {10, "mx.mixed.test"}}), own, tie_order);
    ASSERT_FALSE(plan.decided);
    EXPECT_EQ(names(plan), std::vector<std::string>{"mx.mixed.test"});
    EXPECT_EQ(plan.skipped.size(), 1u);
}

TEST_F(mx_rules, a_lone_root_exchange_with_nonzero_preference_defers) {
    auto plan = plan_from_mx("odd.test", mx_data({{10, ""}}), own, tie_order);
    ASSERT_TRUE(plan.decided);
    EXPECT_EQ(plan.decided->status, lookup_status::defer);
    EXPECT_NE(plan.decided->reason.find("no usable MX host for odd.test"), std::string::npos);
}

TEST_F(mx_rules, hosts_at_or_above_our_own_preference_are_dropped) {
    auto plan = plan_from_mx("self.test",
                             mx_data({{5, "primary.self.test"}, {10, "MX.Self.Test."}, {10, "peer.self.test"},
                                      {20, "backup.self.test"}}),
                             own, tie_order);
    ASSERT_FALSE(plan.decided);
    EXPECT_EQ(names(plan), std::vector<std::string>{"primary.self.test"});
}

TEST_F(mx_rules, only_ourselves_left_loops_back) {
    auto plan = plan_from_mx("self.test", mx_data({{10, "mx.self.test"}, {20, "backup.self.test"}}), own, tie_order);
    ASSERT_TRUE(plan.decided);
    EXPECT_EQ(plan.decided->status, lookup_status::defer);
    EXPECT_EQ(plan.decided->reason, "mail for self.test loops back to myself");
}

TEST_F(mx_rules, own_names_are_matched_with_any_of_several_names) {
    std::vector<std::string> several{"mx1.example.test", "smtp.example.test."};
    auto plan = plan_from_mx("example.test", mx_data({{10, "SMTP.example.test"}, {5, "other.test"}}), several,
                             tie_order);
    EXPECT_EQ(names(plan), std::vector<std::string>{"other.test"});
}

TEST_F(mx_rules, address_literal_exchanges_are_skipped) {
    auto plan = plan_from_mx("ipmx.test", mx_data({{10, "192.0.2.1"}, {20, "mx.ipmx.test"}}), own, tie_order);
    ASSERT_FALSE(plan.decided);
    EXPECT_EQ(names(plan), std::vector<std::string>{"mx.ipmx.test"});
    ASSERT_EQ(plan.skipped.size(), 1u);
    EXPECT_NE(plan.skipped[0].find("192.0.2.1"), std::string::npos);

    auto only = plan_from_mx("ipmx.test", mx_data({{10, "192.0.2.1"}}), own, tie_order);
    ASSERT_TRUE(only.decided);
    EXPECT_EQ(only.decided->status, lookup_status::defer);
    EXPECT_TRUE(is_address_literal_name("192.0.2.1."));
    EXPECT_FALSE(is_address_literal_name("192.0.2.mx"));
}

TEST_F(mx_rules, a_host_without_addresses_is_skipped) {
    auto plan = plan_from_mx("example.test", mx_data({{10, "mx1.example.test"}, {20, "mx2.example.test"},
                                                      {30, "mx3.example.test"}}),
                             own, tie_order);
    auto hops = hops_from_addresses(
        "example.test", plan,
        {{failed(answer_kind::failed, "SERVFAIL"), failed(answer_kind::failed, "SERVFAIL")},
         {no_data(), no_data()},
         v4("192.0.2.3")});
    ASSERT_EQ(hops.status, lookup_status::ok);
    ASSERT_EQ(hops.hosts.size(), 1u);
    EXPECT_EQ(hops.hosts[0].name, "mx3.example.test");
    EXPECT_EQ(hops.hosts[0].preference, 30);
    EXPECT_TRUE(hops.from_mx);
}

TEST_F(mx_rules, one_failed_address_family_does_not_lose_the_other) {
    auto plan = plan_from_mx("example.test", mx_data({{10, "mx.example.test"}}), own, tie_order);
    auto hops = hops_from_addresses("example.test", plan,
                                    {{failed(answer_kind::timed_out), addresses({"2001:db8::25"})}});
    ASSERT_EQ(hops.status, lookup_status::ok);
    ASSERT_EQ(hops.hosts[0].addresses.size(), 1u);
    EXPECT_EQ(hops.hosts[0].addresses[0].to_string(), "2001:db8::25");
}

TEST_F(mx_rules, bogus_addresses_are_never_used) {
    auto plan = plan_from_mx("example.test", mx_data({{10, "mx.example.test"}}), own, tie_order);
    address_answer bogus{outcome(answer_kind::bogus, dnssec::bogus, "no signatures"), {make_address("203.0.113.66")}, {}};
    auto hops = hops_from_addresses("example.test", plan, {{bogus, no_data()}});
    EXPECT_EQ(hops.status, lookup_status::defer);
    EXPECT_NE(hops.reason.find("DNSSEC-bogus answer for mx.example.test A"), std::string::npos) << hops.reason;
}

TEST_F(mx_rules, no_host_with_addresses_defers_naming_each_failure) {
    auto plan = plan_from_mx("example.test", mx_data({{10, "mx1.example.test"}, {20, "mx2.example.test"}}), own,
                             tie_order);
    auto hops = hops_from_addresses(
        "example.test", plan,
        {{failed(answer_kind::failed, "SERVFAIL"), no_data()}, {failed(answer_kind::nxdomain), no_data()}});
    EXPECT_EQ(hops.status, lookup_status::defer);
    EXPECT_NE(hops.reason.find("no MX host of example.test has an address"), std::string::npos) << hops.reason;
    EXPECT_NE(hops.reason.find("SERVFAIL for mx1.example.test A"), std::string::npos) << hops.reason;
    EXPECT_NE(hops.reason.find("NXDOMAIN for mx2.example.test"), std::string::npos) << hops.reason;
}

TEST_F(mx_rules, fallback_without_addresses_defers) {
    auto plan = plan_from_mx("empty.test", {outcome(answer_kind::nodata), {}}, own, tie_order);
    auto nothing = hops_from_addresses("empty.test", plan, {{no_data(), no_data()}});
    EXPECT_EQ(nothing.status, lookup_status::defer);
    EXPECT_NE(nothing.reason.find("no A or AAAA records for empty.test"), std::string::npos) << nothing.reason;
    auto broken = hops_from_addresses("empty.test", plan, {{failed(answer_kind::failed, "SERVFAIL"), no_data()}});
    EXPECT_EQ(broken.status, lookup_status::defer);
    EXPECT_NE(broken.reason.find("SERVFAIL for empty.test A"), std::string::npos) << broken.reason;
}

TEST_F(mx_rules, unanswered_hosts_count_as_timeouts) {
    auto plan = plan_from_mx("example.test", mx_data({{10, "mx1.example.test"}, {20, "mx2.example.test"}}), own,
                             tie_order);
    auto hops = hops_from_addresses("example.test", plan, {v4("192.0.2.1")});   // mx2 never answered
    ASSERT_EQ(hops.status, lookup_status::ok);
    EXPECT_EQ(hops.hosts.size(), 1u);
}

TEST_F(mx_rules, dnssec_status_is_carried) {
    auto plan = plan_from_mx("signed.test", mx_data({{10, "mx.signed.test"}, {20, "mx2.signed.test"}}, dnssec::secure),
                             own, tie_order);
    EXPECT_EQ(plan.mx_status, dnssec::secure);
    auto hops = hops_from_addresses("signed.test", plan,
                                    {{addresses({"192.0.2.1"}, dnssec::secure), no_data(dnssec::secure)},
                                     {addresses({"192.0.2.2"}, dnssec::secure), addresses({"2001:db8::2"})}});
    ASSERT_EQ(hops.status, lookup_status::ok);
    EXPECT_EQ(hops.mx_status, dnssec::secure);
    EXPECT_EQ(hops.hosts[0].address_status, dnssec::secure);
    EXPECT_EQ(hops.hosts[1].address_status, dnssec::insecure);   // the AAAA was not validated

    auto denial = plan_from_mx("signed.test", {outcome(answer_kind::nodata, dnssec::secure), {}}, own, tie_order);
    EXPECT_EQ(denial.mx_status, dnssec::secure);
    EXPECT_FALSE(denial.from_mx);
}

TEST_F(mx_rules, a_decided_plan_passes_through_the_second_round) {
    auto plan = plan_from_mx("nullmx.test", mx_data({{0, ""}}), own, tie_order);
    auto hops = hops_from_addresses("nullmx.test", plan, {});
    EXPECT_EQ(hops.status, lookup_status::null_mx);
}

TEST(describe_failure, texts) {
    EXPECT_EQ(describe_failure({answer_kind::failed, dnssec::insecure, "SERVFAIL"}, "example.test", "MX"),
              "SERVFAIL for example.test MX");
    EXPECT_EQ(describe_failure({answer_kind::timed_out, dnssec::insecure, ""}, "mx.example.test", "AAAA"),
              "timeout for mx.example.test AAAA");
    EXPECT_EQ(describe_failure({answer_kind::bogus, dnssec::bogus, ""}, "example.test", "MX"),
              "DNSSEC-bogus answer for example.test MX");
}

}  // namespace
}  // namespace postern::route

namespace postern::route {
namespace {

TEST(mx_rules_limits, only_the_best_hosts_are_looked_up) {
    std::mt19937 engine{7};
    std::vector<mx_record> records;
    for (std::uint16_t i = 0; i < 25; ++i) records.push_back({static_cast<std::uint16_t>(100 - i), fmt::format("mx{}.big.test", i)});
    mx_answer answer;
    answer.outcome.kind = answer_kind::data;
    answer.records = records;
    auto plan = plan_from_mx("big.test", answer, {}, engine);
    ASSERT_EQ(plan.hosts.size(), max_mx_hosts);
    EXPECT_EQ(plan.hosts.front().preference, 76);
    EXPECT_EQ(plan.hosts.back().preference, 85);
    ASSERT_EQ(plan.skipped.size(), 1u);
    EXPECT_EQ(plan.skipped[0], "15 MX hosts of big.test beyond the first 10 not tried");
}

}  // namespace
}  // namespace postern::route
