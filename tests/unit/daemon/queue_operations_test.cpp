// The `postern queue` operations over a real RocksDB store, their control-socket form, and
// the scheduler's side of `hold` (a held message is never planned).
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>

#include "daemon/control_socket.hpp"
#include "daemon/queue_operations.hpp"
#include "config/schema.hpp"
#include "delivery/scheduler.hpp"
#include "queue/store.hpp"

namespace postern::daemon {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using smtp::recipient_state;

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "postern-queueops-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

const std::string body_text =
    "From: <alice@client.test>\r\nTo: <bob@example.test>\r\nSubject: quarterly figures\r\n\r\n"
    "SECRET BODY LINE\r\n";

smtp::envelope sample(std::chrono::system_clock::time_point now) {
    smtp::envelope env;
    env.mail_from = "alice@client.test";
    env.received_at = now - 10min;
    env.client_address = "192.0.2.7:49152";
    env.client_helo = "client.test";
    env.receive_connector = "inbound";
    env.session_id = "08DB5A1E00000001";
    env.envid = "QQ314159";
    smtp::recipient deferred;
    deferred.address = "bob@example.test";
    deferred.attempts = 2;
    deferred.next_attempt = now + 5min;
    deferred.last_reply = "451 4.4.1 connection refused by 127.0.0.1:2526";
    deferred.orcpt = "rfc822;bob@example.test";
    deferred.notify = "FAILURE,DELAY";
    smtp::recipient delivered;
    delivered.address = "carol@example.test";
    delivered.state = recipient_state::delivered;
    delivered.attempts = 1;
    delivered.last_reply = "250 2.0.0 Ok";
    env.recipients = {deferred, delivered};
    return env;
}

class queue_operations_test : public ::testing::Test {
protected:
    void SetUp() override {
        store = queue::open_rocksdb_store({dir.path / "queue", 0});
        id = commit(sample(now), body_text);
    }

    std::string commit(smtp::envelope env, std::string body) {
        std::promise<queue::commit_result> p;
        auto f = p.get_future();
        store->commit(std::move(env), std::move(body), [&p](queue::commit_result r) { p.set_value(std::move(r)); });
        auto r = f.get();
        EXPECT_TRUE(r.ok) << r.reason;
        return r.id;
    }

    temp_dir dir;
    std::unique_ptr<queue::store> store;
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now();
    std::string id;
};

TEST_F(queue_operations_test, list_says_why_each_message_waits) {
    queue_operations ops(*store);
    auto r = ops.list(now);
    ASSERT_TRUE(r.ok) << r.error;
    ASSERT_EQ(r.data["count"], 1);
    EXPECT_EQ(r.data["total_size"], body_text.size());
    const auto& m = r.data["messages"][0];
    EXPECT_EQ(m["id"], id);
    EXPECT_EQ(m["sender"], "alice@client.test");
    EXPECT_EQ(m["size"], body_text.size());
    EXPECT_EQ(m["held"], false);
    EXPECT_EQ(m["status"], "deferred");
    EXPECT_EQ(m["reason"], "451 4.4.1 connection refused by 127.0.0.1:2526");
    EXPECT_EQ(m["received_at"], iso_time(now - 10min));
    ASSERT_EQ(m["recipients"].size(), 2u);
    EXPECT_EQ(m["recipients"][0]["address"], "bob@example.test");
    EXPECT_EQ(m["recipients"][0]["state"], "pending");
    EXPECT_EQ(m["recipients"][0]["attempts"], 2);
    EXPECT_EQ(m["recipients"][0]["next_attempt"], iso_time(now + 5min));
    EXPECT_EQ(m["recipients"][0]["orcpt"], "rfc822;bob@example.test");
    EXPECT_EQ(m["recipients"][0]["notify"], "FAILURE,DELAY");
    EXPECT_EQ(m["recipients"][1]["state"], "delivered");
    EXPECT_EQ(m["recipients"][1]["notify"], "");
    EXPECT_TRUE(m["recipients"][1]["next_attempt"].is_null());

    const auto text = format_queue_list(r.data, now);
    EXPECT_NE(text.find(id), std::string::npos) << text;
    EXPECT_NE(text.find("waiting: 451 4.4.1 connection refused"), std::string::npos) << text;
    EXPECT_NE(text.find("attempts 2, next attempt"), std::string::npos) << text;
    EXPECT_NE(text.find("(in 4m"), std::string::npos) << text;
    EXPECT_NE(text.find("dsn: NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.test\n"), std::string::npos) << text;
    EXPECT_EQ(text.find("dsn:"), text.rfind("dsn:")) << "only the recipient with parameters: " << text;
    EXPECT_NE(text.find("-- 1 message(s)"), std::string::npos) << text;
}

TEST_F(queue_operations_test, an_empty_queue_lists_as_empty) {
    ASSERT_TRUE(store->remove(id));
    queue_operations ops(*store);
    auto r = ops.list(now);
    ASSERT_TRUE(r.ok);
    EXPECT_TRUE(r.data["messages"].empty());
    EXPECT_EQ(format_queue_list(r.data, now), "The queue is empty.\n");
}

TEST_F(queue_operations_test, show_gives_the_envelope_and_headers_never_the_body) {
    queue_operations ops(*store);
    auto r = ops.show(id, now);
    ASSERT_TRUE(r.ok) << r.error;
    const auto& m = r.data["message"];
    EXPECT_EQ(m["envid"], "QQ314159");
    EXPECT_EQ(m["client_address"], "192.0.2.7:49152");
    EXPECT_EQ(m["receive_connector"], "inbound");
    EXPECT_EQ(m["session_id"], "08DB5A1E00000001");
    EXPECT_EQ(m["recipients"][0]["notify"], "FAILURE,DELAY");
    EXPECT_EQ(m["headers"], "From: <alice@client.test>\r\nTo: <bob@example.test>\r\nSubject: quarterly figures\r\n");
    EXPECT_EQ(r.data.dump().find("SECRET BODY"), std::string::npos);
    const auto text = format_queue_show(r.data, now);
    EXPECT_NE(text.find("  Subject: quarterly figures\n"), std::string::npos) << text;
    EXPECT_NE(text.find("dsn: NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.test\n"), std::string::npos) << text;
    EXPECT_EQ(text.find("SECRET BODY"), std::string::npos) << text;
}

TEST_F(queue_operations_test, bad_and_unknown_ids) {
    queue_operations ops(*store);
    for (auto bad : {"", "../../etc/passwd", "00061F0A1B2C3D4E", "123"}) {
        auto r = ops.show(bad, now);
        EXPECT_FALSE(r.ok);
        EXPECT_TRUE(r.bad_request) << bad;
        EXPECT_NE(r.error.find("not a queue id"), std::string::npos) << r.error;
        EXPECT_TRUE(ops.hold(bad).bad_request);
        EXPECT_TRUE(ops.remove(bad).bad_request);
    }
    const std::string absent = "0000000000000001";
    for (const auto& r : {ops.show(absent, now), ops.hold(absent), ops.release(absent), ops.remove(absent),
                          ops.retry(absent, now)}) {
        EXPECT_FALSE(r.ok);
        EXPECT_FALSE(r.bad_request);
        EXPECT_EQ(r.error, "no message 0000000000000001 in the queue");
    }
}

TEST_F(queue_operations_test, retry_makes_pending_recipients_due_now_and_nothing_else) {
    queue_operations ops(*store);
    const auto later = now + 1s;
    auto r = ops.retry(id, later);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.data["recipients"], 1);
    auto env = store->load_envelope(id);
    ASSERT_TRUE(env);
    EXPECT_EQ(env->recipients[0].next_attempt, later);
    EXPECT_EQ(env->recipients[0].attempts, 2u);     // the count of attempts stays
    EXPECT_EQ(env->recipients[1].state, recipient_state::delivered);
    EXPECT_EQ(ops.list(later).data["messages"][0]["status"], "ready");

    const auto second = commit(sample(now), body_text);
    auto all = ops.retry(std::nullopt, later + 1s);
    ASSERT_TRUE(all.ok) << all.error;
    EXPECT_EQ(all.data["messages"], 2);
    EXPECT_EQ(store->load_envelope(second)->recipients[0].next_attempt, later + 1s);
}

TEST_F(queue_operations_test, hold_and_release_are_durable_and_shown) {
    queue_operations ops(*store);
    auto held = ops.hold(id);
    ASSERT_TRUE(held.ok) << held.error;
    EXPECT_TRUE(store->load_envelope(id)->held);
    auto listed = ops.list(now).data["messages"][0];
    EXPECT_EQ(listed["held"], true);
    EXPECT_EQ(listed["status"], "held");
    EXPECT_NE(format_queue_list(ops.list(now).data, now).find("[HELD]"), std::string::npos);
    EXPECT_NE(ops.hold(id).message.find("already held"), std::string::npos);
    // A retry of a held message says it stays held.
    EXPECT_NE(ops.retry(id, now).message.find("held"), std::string::npos);

    // Reopened: still held.
    store.reset();
    store = queue::open_rocksdb_store({dir.path / "queue", 0});
    queue_operations again(*store);
    EXPECT_TRUE(store->load_envelope(id)->held);
    ASSERT_TRUE(again.release(id).ok);
    EXPECT_FALSE(store->load_envelope(id)->held);
}

TEST_F(queue_operations_test, delete_removes_envelope_and_body) {
    queue_operations ops(*store);
    auto r = ops.remove(id);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_NE(r.message.find("deleted " + id), std::string::npos) << r.message;
    EXPECT_FALSE(store->load_envelope(id));
    EXPECT_FALSE(store->load_body(id));
    EXPECT_TRUE(ops.list(now).data["messages"].empty());
    EXPECT_FALSE(ops.remove(id).ok);
}

TEST_F(queue_operations_test, requests_in_the_control_protocol_form) {
    queue_operations ops(*store);
    EXPECT_TRUE(handle_queue_request(ops, json{{"command", "queue-list"}}, now).ok);
    EXPECT_TRUE(handle_queue_request(ops, json{{"command", "queue-hold"}, {"id", id}}, now).ok);
    EXPECT_TRUE(store->load_envelope(id)->held);
    EXPECT_TRUE(handle_queue_request(ops, json{{"command", "queue-release"}, {"id", id}}, now).ok);
    EXPECT_TRUE(handle_queue_request(ops, json{{"command", "queue-retry"}}, now).ok);

    auto missing = handle_queue_request(ops, json{{"command", "queue-show"}}, now);
    EXPECT_FALSE(missing.ok);
    EXPECT_TRUE(missing.bad_request);
    auto wrong_type = handle_queue_request(ops, json{{"command", "queue-delete"}, {"id", 42}}, now);
    EXPECT_TRUE(wrong_type.bad_request);
    EXPECT_TRUE(handle_queue_request(ops, json{{"command", "queue-purge"}}, now).bad_request);
    EXPECT_TRUE(store->load_envelope(id));
    EXPECT_TRUE(is_queue_command("queue-delete"));
    EXPECT_FALSE(is_queue_command("reload"));
}

TEST_F(queue_operations_test, control_socket_carries_arguments_and_data) {
    queue_operations ops(*store);
    const auto path = dir.path / "control.sock";
    control_socket server({path, {::geteuid()}, std::nullopt, 2000ms});
    server.start({{}, {}, [&](const json& request) {
                      auto r = handle_queue_request(ops, request, now);
                      control_reply reply{r.ok, r.message, r.error};
                      reply.data = r.data;
                      reply.bad_request = r.bad_request;
                      return reply;
                  }});
    auto listed = control_exchange(path, json{{"command", "queue-list"}}, 5s);
    ASSERT_TRUE(listed.ok) << listed.error;
    EXPECT_EQ(listed.data["messages"][0]["id"], id);

    auto shown = control_exchange(path, json{{"command", "queue-show"}, {"id", id}}, 5s);
    ASSERT_TRUE(shown.ok) << shown.error;
    EXPECT_EQ(shown.data["message"]["envid"], "QQ314159");

    auto bad = control_exchange(path, json{{"command", "queue-show"}, {"id", "nope"}}, 5s);
    EXPECT_FALSE(bad.ok);
    EXPECT_TRUE(bad.bad_request);
    EXPECT_FALSE(bad.no_server);

    // Stored text that is not UTF-8 (a peer's reply) travels, replaced, instead of failing.
    auto env = store->load_envelope(id);
    env->recipients[0].last_reply = "451 \xff\xfe broken";
    ASSERT_TRUE(store->update(*env));
    auto odd = control_exchange(path, json{{"command", "queue-list"}}, 5s);
    ASSERT_TRUE(odd.ok) << odd.error;
    EXPECT_EQ(odd.data["messages"][0]["recipients"][0]["last_reply"].get<std::string>().substr(0, 4), "451 ");

    ASSERT_TRUE(control_exchange(path, json{{"command", "queue-delete"}, {"id", id}}, 5s).ok);
    EXPECT_FALSE(store->load_envelope(id));
}

TEST(control_request_no_server, is_flagged_so_the_caller_may_open_the_store) {
    temp_dir dir;
    auto absent = control_exchange(dir.path / "control.sock", json{{"command", "queue-list"}}, 2s);
    EXPECT_FALSE(absent.ok);
    EXPECT_TRUE(absent.no_server);
}

TEST(scheduler_hold, a_held_message_is_never_planned) {
    config::configuration cfg;
    config::send_connector c;
    c.name = "everything";
    c.address_spaces = {"*"};
    cfg.send_connectors.push_back(c);
    const auto now = std::chrono::system_clock::now();
    auto env = sample(now);
    env.id = "0000000000000001";
    env.recipients[0].next_attempt = now;
    EXPECT_EQ(delivery::plan_message(cfg, env, now).jobs.size(), 1u);
    env.held = true;
    auto p = delivery::plan_message(cfg, env, now);
    EXPECT_TRUE(p.jobs.empty());
    EXPECT_TRUE(p.unroutable.empty());
}

}  // namespace
}  // namespace postern::daemon
