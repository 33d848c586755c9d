// kill -9 durability: every commit acknowledged before the crash is there after reopen.
//
// The committing process is a fresh exec of this test binary (running only the
// crash_child test), not a bare fork: a forked copy of a threaded process inherits
// RocksDB's thread pools without their threads.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "queue/store.hpp"
#include "unit/queue/test_support.hpp"

namespace postern::queue {
namespace {

constexpr char child_dir_variable[] = "POSTERN_QUEUE_CRASH_CHILD_DIR";
constexpr char child_fd_variable[] = "POSTERN_QUEUE_CRASH_CHILD_FD";
constexpr int child_ack_fd = 100;

std::string body_for(unsigned long n) {
    return "Subject: message " + std::to_string(n) + "\r\n\r\n" + std::string(500 + (n * 131) % 9000, 'x');
}
std::string sender_for(unsigned long n) { return "sender-" + std::to_string(n) + "@client.test"; }

// Runs only inside the child: commits from 8 threads until killed, and reports each
// acknowledged commit as "<sequence> <id>\n" on the pipe (one write(2) below PIPE_BUF is
// atomic, so lines from different threads never interleave).
TEST(crash_child, commits_until_killed) {
    const char* dir = std::getenv(child_dir_variable);
    if (!dir) GTEST_SKIP() << "helper process for crash_durability; runs only when started by it";
    auto s = open_rocksdb_store({.dir = dir, .min_free = 0});
    std::atomic<unsigned long> sequence{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            for (;;) {
                auto n = sequence.fetch_add(1);
                auto r = testing::commit_and_wait(*s, testing::sample_envelope(sender_for(n)), body_for(n));
                if (!r.ok) std::abort();
                auto line = std::to_string(n) + " " + r.id + "\n";
                if (::write(child_ack_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
            }
        });
    for (auto& t : threads) t.join();
}

TEST(crash_durability, every_acknowledged_commit_survives_sigkill) {
    testing::temp_dir dir;
    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    std::string self = std::filesystem::read_symlink("/proc/self/exe").string();

    pid_t child = ::fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) {
        // Only async-signal-safe calls between fork and exec.
        ::dup2(pipe_fds[1], child_ack_fd);  // dup2 clears close-on-exec for the copy
        ::setenv(child_dir_variable, dir.path().c_str(), 1);
        ::execl(self.c_str(), self.c_str(), "--gtest_filter=crash_child.commits_until_killed", nullptr);
        ::_exit(127);
    }
    ::close(pipe_fds[1]);

    constexpr std::size_t acknowledged_before_kill = 400;
    std::map<unsigned long, std::string> acknowledged;
    std::string pending;
    bool killed = false;
    char buffer[4096];
    for (;;) {
        auto n = ::read(pipe_fds[0], buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF: the child is gone and every ack it wrote has been read
        pending.append(buffer, static_cast<std::size_t>(n));
        for (auto end = pending.find('\n'); end != std::string::npos; end = pending.find('\n')) {
            std::istringstream line(pending.substr(0, end));
            pending.erase(0, end + 1);
            unsigned long sequence;
            std::string id;
            line >> sequence >> id;
            acknowledged[sequence] = id;
        }
        if (!killed && acknowledged.size() >= acknowledged_before_kill) {
            ::kill(child, SIGKILL);
            killed = true;
        }
    }
    ::close(pipe_fds[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "child did not die by SIGKILL (status " << status << "); acks read: " << acknowledged.size();
    ASSERT_GE(acknowledged.size(), acknowledged_before_kill);

    auto s = open_rocksdb_store({.dir = dir.path(), .min_free = 0});
    for (const auto& [sequence, id] : acknowledged) {
        auto env = s->load_envelope(id);
        ASSERT_TRUE(env) << "acknowledged message " << sequence << " (" << id << ") lost";
        EXPECT_EQ(env->mail_from, sender_for(sequence));
        EXPECT_EQ(s->load_body(id), body_for(sequence)) << id;
    }
    // Messages in flight at the kill may or may not be there, but never half.
    for (const auto& env : s->list()) EXPECT_TRUE(s->load_body(env.id)) << env.id;
}

}  // namespace
}  // namespace postern::queue
