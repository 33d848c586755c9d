#include <atomic>
#include <fstream>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "queue/queue_id.hpp"
#include "queue/store.hpp"
#include "unit/queue/test_support.hpp"

namespace postern::queue {
namespace {

using testing::commit_and_wait;
using testing::sample_envelope;
using testing::temp_dir;

std::unique_ptr<store> open_store(const std::filesystem::path& dir, std::uint64_t min_free = 0) {
    return open_rocksdb_store({.dir = dir, .min_free = min_free});
}

std::string body_of_size(std::size_t n, char seed = 'a') {
    std::string body = "Subject: test\r\n\r\n";
    while (body.size() < n) body.push_back(static_cast<char>(seed + body.size() % 23));
    return body;
}

TEST(rocksdb_store, commit_then_reopen_gives_identical_envelope_and_body) {
    temp_dir dir;
    auto env = sample_envelope();
    env.recipients[1].state = recipient_state::failed;
    env.recipients[1].attempts = 2;
    env.recipients[1].last_reply = "550 5.1.1 no such user";
    const auto small_body = body_of_size(300);
    const auto blob_body = body_of_size(200 * 1024, 'A');  // above min_blob_size: a blob file
    std::string small_id, blob_id;
    {
        auto s = open_store(dir.path() / "queue");
        auto r1 = commit_and_wait(*s, env, small_body);
        auto r2 = commit_and_wait(*s, env, blob_body);
        ASSERT_TRUE(r1.ok) << r1.reason;
        ASSERT_TRUE(r2.ok) << r2.reason;
        EXPECT_TRUE(parse_queue_id(r1.id));
        EXPECT_LT(r1.id, r2.id);
        small_id = r1.id;
        blob_id = r2.id;
    }
    auto s = open_store(dir.path() / "queue");
    for (const auto& [id, body] : {std::pair{small_id, small_body}, std::pair{blob_id, blob_body}}) {
        auto loaded = s->load_envelope(id);
        ASSERT_TRUE(loaded) << id;
        EXPECT_EQ(loaded->id, id);
        EXPECT_EQ(loaded->mail_from, env.mail_from);
        EXPECT_EQ(loaded->received_at, env.received_at);
        EXPECT_EQ(loaded->envid, env.envid);
        ASSERT_EQ(loaded->recipients.size(), 2u);
        EXPECT_EQ(loaded->recipients[0].orcpt, env.recipients[0].orcpt);
        EXPECT_EQ(loaded->recipients[1].state, recipient_state::failed);
        EXPECT_EQ(loaded->recipients[1].last_reply, env.recipients[1].last_reply);
        EXPECT_EQ(s->load_body(id), body);
        EXPECT_EQ(loaded->body_size, body.size());   // set by the store at commit
        EXPECT_FALSE(loaded->held);
    }
    auto all = s->list();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].id, small_id);
    EXPECT_EQ(all[1].id, blob_id);
    EXPECT_FALSE(s->load_envelope("0000000000000000"));
    EXPECT_FALSE(s->load_body("0000000000000000"));
}

TEST(rocksdb_store, a_successful_commit_hands_back_what_it_wrote) {
    temp_dir dir;
    auto s = open_store(dir.path() / "queue");
    const auto body = body_of_size(100 * 1024);
    auto r = commit_and_wait(*s, sample_envelope(), body);
    ASSERT_TRUE(r.ok) << r.reason;
    EXPECT_EQ(r.committed.id, r.id);
    EXPECT_EQ(r.committed.body_size, body.size());
    EXPECT_EQ(r.committed.recipients.size(), sample_envelope().recipients.size());
    EXPECT_TRUE(r.body == body);
    EXPECT_TRUE(s->load_body(r.id) == body);
}

TEST(rocksdb_store, ids_after_reopen_sort_after_existing_ones) {
    temp_dir dir;
    std::string first;
    {
        auto s = open_store(dir.path());
        first = commit_and_wait(*s, sample_envelope(), "x").id;
    }
    auto s = open_store(dir.path());
    EXPECT_GT(commit_and_wait(*s, sample_envelope(), "y").id, first);
}

TEST(rocksdb_store, sixteen_threads_committing_share_syncs) {
    temp_dir dir;
    auto s = open_store(dir.path());
    constexpr int threads = 16, per_thread = 40;
    std::vector<std::vector<std::string>> ids(threads);
    std::atomic<int> failures{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                auto r = commit_and_wait(*s, sample_envelope(fmt::format("t{}-{}@x.test", t, i)),
                                         body_of_size(1000 + 97 * i));
                if (!r.ok) ++failures;
                ids[t].push_back(r.id);
            }
        });
    for (auto& w : workers) w.join();
    EXPECT_EQ(failures.load(), 0);

    std::set<std::string> unique;
    for (int t = 0; t < threads; ++t)
        for (int i = 0; i < per_thread; ++i) {
            const auto& id = ids[t][i];
            unique.insert(id);
            auto env = s->load_envelope(id);
            ASSERT_TRUE(env) << id;
            EXPECT_EQ(env->mail_from, fmt::format("t{}-{}@x.test", t, i));
            EXPECT_EQ(s->load_body(id), body_of_size(1000 + 97 * i));
        }
    EXPECT_EQ(unique.size(), std::size_t{threads * per_thread});
    EXPECT_EQ(s->list().size(), std::size_t{threads * per_thread});
    auto st = s->stats();
    EXPECT_EQ(st.commits, std::uint64_t{threads * per_thread});
    EXPECT_LT(st.syncs, st.commits) << "group commit did not group";
}

TEST(rocksdb_store, below_min_free_commit_fails_with_reason_and_stores_nothing) {
    temp_dir dir;
    auto s = open_store(dir.path(), ~0ull / 2);
    EXPECT_TRUE(s->low_on_space());
    auto r = commit_and_wait(*s, sample_envelope(), "body");
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.id.empty());
    EXPECT_TRUE(r.body.empty());                    // nothing handed back for a refusal
    EXPECT_NE(r.reason.find("below min_free"), std::string::npos) << r.reason;
    EXPECT_TRUE(s->list().empty());
    EXPECT_EQ(s->stats().commits, 0u);
    EXPECT_EQ(s->stats().failed_commits, 1u);
    EXPECT_EQ(s->stats().syncs, 0u);
}

TEST(rocksdb_store, enough_space_is_not_low) {
    temp_dir dir;
    auto s = open_store(dir.path(), 1024);
    EXPECT_FALSE(s->low_on_space());
}

TEST(rocksdb_store, update_replaces_the_envelope_durably) {
    temp_dir dir;
    std::string id;
    {
        auto s = open_store(dir.path());
        auto r = commit_and_wait(*s, sample_envelope(), "body");
        ASSERT_TRUE(r.ok);
        id = r.id;
        auto env = *s->load_envelope(id);
        env.recipients[0].state = recipient_state::delivered;
        env.recipients[0].last_reply = "250 2.0.0 queued";
        env.recipients[1].attempts = 1;
        env.delay_notice_sent = true;
        std::string reason;
        EXPECT_TRUE(s->update(env, &reason)) << reason;
    }
    auto s = open_store(dir.path());
    auto env = s->load_envelope(id);
    ASSERT_TRUE(env);
    EXPECT_EQ(env->recipients[0].state, recipient_state::delivered);
    EXPECT_EQ(env->recipients[0].last_reply, "250 2.0.0 queued");
    EXPECT_EQ(env->recipients[1].attempts, 1u);
    EXPECT_TRUE(env->delay_notice_sent);
    EXPECT_EQ(s->load_body(id), "body");
}

TEST(rocksdb_store, update_of_an_unknown_message_fails_and_creates_nothing) {
    temp_dir dir;
    auto s = open_store(dir.path());
    auto env = sample_envelope();
    env.id = "00061f0a1b2c3d4e";
    std::string reason;
    EXPECT_FALSE(s->update(env, &reason));
    EXPECT_NE(reason.find("no such message"), std::string::npos) << reason;
    env.id = "not-an-id";
    EXPECT_FALSE(s->update(env));
    EXPECT_TRUE(s->list().empty());
}

TEST(rocksdb_store, remove_deletes_envelope_and_body) {
    temp_dir dir;
    std::string removed, kept;
    {
        auto s = open_store(dir.path());
        removed = commit_and_wait(*s, sample_envelope(), body_of_size(10000)).id;
        kept = commit_and_wait(*s, sample_envelope(), "kept").id;
        std::string reason;
        EXPECT_TRUE(s->remove(removed, &reason)) << reason;
        EXPECT_FALSE(s->load_envelope(removed));
        EXPECT_FALSE(s->load_body(removed));
        EXPECT_FALSE(s->remove(removed, &reason));
        EXPECT_NE(reason.find("no such message"), std::string::npos) << reason;
    }
    auto s = open_store(dir.path());
    EXPECT_FALSE(s->load_envelope(removed));
    EXPECT_FALSE(s->load_body(removed));
    ASSERT_EQ(s->list().size(), 1u);
    EXPECT_EQ(s->list()[0].id, kept);
}

TEST(rocksdb_store, update_and_remove_work_from_inside_a_commit_callback) {
    temp_dir dir;
    auto s = open_store(dir.path());
    std::promise<std::pair<bool, bool>> promise;
    s->commit(sample_envelope(), "body", [&](commit_result r) {
        auto env = *s->load_envelope(r.id);
        env.delay_notice_sent = true;
        bool updated = s->update(env);
        bool removed = s->remove(r.id);
        promise.set_value({updated, removed});
    });
    auto [updated, removed] = promise.get_future().get();
    EXPECT_TRUE(updated);
    EXPECT_TRUE(removed);
    EXPECT_TRUE(s->list().empty());
}

TEST(rocksdb_store, concurrent_changes_of_one_message_all_apply_and_share_syncs) {
    temp_dir dir;
    auto s = open_store(dir.path());
    const auto id = commit_and_wait(*s, sample_envelope(), "body").id;
    const auto syncs_before = s->stats().syncs;
    constexpr int threads = 16, per_thread = 20;
    std::atomic<int> failures{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t)
        workers.emplace_back([&] {
            for (int i = 0; i < per_thread; ++i) {
                auto r = change_and_wait(*s, id, [](envelope& env, std::vector<new_message>&) {
                    ++env.recipients[0].attempts;   // a lost update would show as a smaller count
                    return change_action::update;
                });
                if (!r.ok || !r.found) ++failures;
            }
        });
    for (auto& w : workers) w.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(s->load_envelope(id)->recipients[0].attempts, std::uint32_t{threads * per_thread});
    EXPECT_LT(s->stats().syncs - syncs_before, std::uint64_t{threads * per_thread}) << "changes did not share syncs";
}

TEST(rocksdb_store, a_change_and_the_message_it_adds_are_durable_together) {
    temp_dir dir;
    std::string id, added;
    {
        auto s = open_store(dir.path());
        id = commit_and_wait(*s, sample_envelope(), "original").id;
        auto r = change_and_wait(*s, id, [](envelope& env, std::vector<new_message>& also) {
            env.recipients[0].state = recipient_state::failed;
            envelope dsn;
            dsn.recipients.push_back({});
            dsn.recipients[0].address = env.mail_from;
            also.push_back({dsn, "the notice"});
            return change_action::update;
        });
        ASSERT_TRUE(r.ok) << r.reason;
        EXPECT_TRUE(r.found);
        EXPECT_EQ(r.action, change_action::update);
        ASSERT_EQ(r.new_ids.size(), 1u);
        added = r.new_ids[0];
        EXPECT_GT(added, id);
    }
    auto s = open_store(dir.path());
    EXPECT_EQ(s->load_envelope(id)->recipients[0].state, recipient_state::failed);
    ASSERT_TRUE(s->load_envelope(added));
    EXPECT_EQ(s->load_envelope(added)->mail_from, "");
    EXPECT_EQ(s->load_body(added), "the notice");
    EXPECT_EQ(s->load_envelope(added)->body_size, std::string("the notice").size());
}

TEST(rocksdb_store, a_change_may_remove_the_message) {
    temp_dir dir;
    std::string id;
    {
        auto s = open_store(dir.path());
        id = commit_and_wait(*s, sample_envelope(), body_of_size(10000)).id;
        auto r = change_and_wait(*s, id, [](envelope&, std::vector<new_message>&) { return change_action::remove; });
        ASSERT_TRUE(r.ok) << r.reason;
        EXPECT_EQ(r.action, change_action::remove);
        // The next change finds nothing and is not asked.
        bool asked = false;
        auto again = change_and_wait(*s, id, [&](envelope&, std::vector<new_message>&) {
            asked = true;
            return change_action::update;
        });
        EXPECT_FALSE(again.ok);
        EXPECT_FALSE(again.found);
        EXPECT_FALSE(asked);
        EXPECT_NE(again.reason.find("no such message"), std::string::npos) << again.reason;
    }
    auto s = open_store(dir.path());
    EXPECT_FALSE(s->load_envelope(id));
    EXPECT_FALSE(s->load_body(id));
}

TEST(rocksdb_store, a_change_adding_a_message_is_refused_whole_when_space_is_low) {
    temp_dir dir;
    std::string id;
    {
        auto s = open_store(dir.path());
        id = commit_and_wait(*s, sample_envelope(), "original").id;
    }
    auto s = open_store(dir.path(), ~0ull / 2);
    auto r = change_and_wait(*s, id, [](envelope& env, std::vector<new_message>& also) {
        env.recipients[0].state = recipient_state::failed;
        also.push_back({envelope{}, "the notice"});
        return change_action::update;
    });
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.found);
    EXPECT_TRUE(r.new_ids.empty());
    EXPECT_NE(r.reason.find("below min_free"), std::string::npos) << r.reason;
    EXPECT_EQ(s->load_envelope(id)->recipients[0].state, recipient_state::pending);
    EXPECT_EQ(s->list().size(), 1u);
    // A change that adds nothing is not a new message: it goes through (that is how
    // recipients get recorded and space comes back).
    auto update = change_and_wait(*s, id, [](envelope& env, std::vector<new_message>&) {
        env.recipients[0].state = recipient_state::delivered;
        return change_action::update;
    });
    EXPECT_TRUE(update.ok) << update.reason;
    EXPECT_EQ(s->load_envelope(id)->recipients[0].state, recipient_state::delivered);
}

TEST(rocksdb_store, a_throwing_change_writes_nothing_and_the_store_goes_on) {
    temp_dir dir;
    auto s = open_store(dir.path());
    const auto id = commit_and_wait(*s, sample_envelope(), "body").id;
    auto r = change_and_wait(*s, id, [](envelope& env, std::vector<new_message>&) -> change_action {
        env.held = true;
        throw std::runtime_error("bad envelope");
    });
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.reason.find("bad envelope"), std::string::npos) << r.reason;
    EXPECT_FALSE(s->load_envelope(id)->held);
    EXPECT_TRUE(commit_and_wait(*s, sample_envelope(), "next").ok);
}

TEST(rocksdb_store, directory_is_0700_and_files_0600) {
    temp_dir dir;
    auto queue_dir = dir.path() / "data" / "queue";
    ::umask(022);
    {
        auto s = open_store(queue_dir);
        ASSERT_TRUE(commit_and_wait(*s, sample_envelope(), body_of_size(50000)).ok);
    }
    struct stat st {};
    ASSERT_EQ(::stat(queue_dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(queue_dir)) {
        ASSERT_EQ(::stat(entry.path().c_str(), &st), 0);
        if (!S_ISREG(st.st_mode)) continue;
        ++files;
        EXPECT_EQ(st.st_mode & 0777, 0600u) << entry.path();
    }
    EXPECT_GT(files, 3);
}

TEST(rocksdb_store, a_second_open_of_the_same_dir_fails_clearly) {
    temp_dir dir;
    auto s = open_store(dir.path());
    try {
        open_store(dir.path());
        FAIL() << "second open succeeded";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(dir.path().string()), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("lock"), std::string::npos) << e.what();
    }
}

TEST(rocksdb_store, destruction_answers_every_queued_commit) {
    temp_dir dir;
    std::atomic<int> answered{0};
    {
        auto s = open_store(dir.path());
        for (int i = 0; i < 200; ++i)
            s->commit(sample_envelope(), "body", [&](commit_result r) {
                if (r.ok) ++answered;
            });
    }
    EXPECT_EQ(answered.load(), 200);
    EXPECT_EQ(open_store(dir.path())->list().size(), 200u);
}

}  // namespace
}  // namespace postern::queue

namespace postern::queue {
namespace {

commit_result commit_spooled_and_wait(store& s, envelope env, std::unique_ptr<body_spool> spool, std::string tail) {
    std::promise<commit_result> promise;
    auto future = promise.get_future();
    s.commit_spooled(std::move(env), std::move(spool), std::move(tail),
                     [&promise](commit_result r) { promise.set_value(std::move(r)); });
    return future.get();
}

std::size_t files_in(const std::filesystem::path& dir) {
    std::size_t n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) n += e.is_regular_file() ? 1 : 0;
    return n;
}

TEST(rocksdb_store, a_spooled_body_is_a_file_of_its_own_read_whole_or_in_part_and_removed_with_its_message) {
    temp_dir dir;
    const auto bodies = dir.path() / "queue-bodies";
    std::string id;
    std::string whole;
    {
        auto s = open_rocksdb_store({.dir = dir.path() / "queue", .min_free = 0});
        auto spool = s->open_spool();
        for (int i = 0; i < 40; ++i) {
            const std::string chunk(256 * 1024, static_cast<char>('a' + i % 26));
            ASSERT_TRUE(spool->append(chunk));
            whole += chunk;
        }
        EXPECT_EQ(files_in(bodies / "spool"), 1u);
        auto r = commit_spooled_and_wait(*s, sample_envelope(), std::move(spool), "the tail\r\n");
        ASSERT_TRUE(r.ok) << r.reason;
        whole += "the tail\r\n";
        id = r.id;
        EXPECT_EQ(files_in(bodies / "spool"), 0u);
        EXPECT_TRUE(std::filesystem::exists(bodies / id));
        EXPECT_EQ(s->body_file(id), bodies / id);
        struct stat st {};
        ASSERT_EQ(::stat((bodies / id).c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u);
    }
    auto s = open_rocksdb_store({.dir = dir.path() / "queue", .min_free = 0});   // survives a reopen
    auto env = s->load_envelope(id);
    ASSERT_TRUE(env);
    EXPECT_TRUE(env->body_in_file);
    EXPECT_EQ(env->body_size, whole.size());
    EXPECT_EQ(s->load_body(id), whole);
    EXPECT_EQ(s->load_body_prefix(id, 1000), whole.substr(0, 1000));
    std::string reason;
    ASSERT_TRUE(s->remove(id, &reason)) << reason;
    EXPECT_FALSE(std::filesystem::exists(bodies / id));
}

TEST(rocksdb_store, a_spool_dropped_without_commit_and_orphan_files_leave_nothing) {
    temp_dir dir;
    const auto bodies = dir.path() / "queue-bodies";
    {
        auto s = open_rocksdb_store({.dir = dir.path() / "queue", .min_free = 0});
        auto spool = s->open_spool();
        spool->append(std::string(300 * 1024, 'x'));
        EXPECT_EQ(files_in(bodies / "spool"), 1u);
    }   // the session went away: nothing is kept
    EXPECT_EQ(files_in(bodies / "spool"), 0u);
    // A body renamed into place whose envelope never became durable (a crash between the
    // two): removed at the next open.
    { std::ofstream(bodies / "000000000000000f") << "orphan"; }
    { std::ofstream(bodies / "spool" / "1-1.tmp") << "a session's spool from a run that ended"; }
    auto s = open_rocksdb_store({.dir = dir.path() / "queue", .min_free = 0});
    EXPECT_EQ(files_in(bodies), 0u);
    EXPECT_EQ(files_in(bodies / "spool"), 0u);
}

TEST(rocksdb_store, a_spooled_commit_refused_for_space_leaves_no_file) {
    temp_dir dir;
    auto s = open_rocksdb_store({.dir = dir.path() / "queue", .min_free = ~0ull});
    auto spool = s->open_spool();
    spool->append(std::string(300 * 1024, 'x'));
    auto r = commit_spooled_and_wait(*s, sample_envelope(), std::move(spool), "tail");
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.store_failed);
    EXPECT_EQ(files_in(dir.path() / "queue-bodies"), 0u);
    EXPECT_EQ(files_in(dir.path() / "queue-bodies" / "spool"), 0u);
}

}  // namespace
}  // namespace postern::queue
