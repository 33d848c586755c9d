#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>

#include "daemon/control_socket.hpp"

namespace postern::daemon {
namespace {

using namespace std::chrono_literals;

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "postern-ctl-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

control_socket_options options_for(const std::filesystem::path& path, std::vector<uid_t> uids = {::geteuid()}) {
    return {path, std::move(uids), std::nullopt, 2000ms};
}

TEST(control_socket, reload_request_gets_the_handlers_reply) {
    temp_dir dir;
    auto path = dir.path / "control.sock";
    control_socket server(options_for(path));
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    std::atomic<int> reloads{0};
    server.start({[&] {
                      ++reloads;
                      return control_reply{true, "reloaded", ""};
                  },
                  [] { return control_reply{false, "", "no"}; }});
    auto reply = control_request(path, "reload", 5s);
    EXPECT_TRUE(reply.ok) << reply.error;
    EXPECT_EQ(reply.message, "reloaded");
    EXPECT_EQ(reloads, 1);

    auto refused = control_request(path, "stop", 5s);
    EXPECT_FALSE(refused.ok);
    EXPECT_EQ(refused.error, "no");

    auto unknown = control_request(path, "restart", 5s);
    EXPECT_FALSE(unknown.ok);
    EXPECT_NE(unknown.error.find("unknown command \"restart\""), std::string::npos) << unknown.error;
}

TEST(control_socket, peer_with_another_uid_is_refused_and_the_handler_not_called) {
    temp_dir dir;
    auto path = dir.path / "control.sock";
    control_socket server(options_for(path, {::geteuid() + 1}));
    bool called = false;
    server.start({[&] {
                      called = true;
                      return control_reply{true, "", ""};
                  },
                  {}});
    auto reply = control_request(path, "reload", 5s);
    EXPECT_FALSE(reply.ok);
    EXPECT_NE(reply.error.find("permission denied: uid " + std::to_string(::geteuid())), std::string::npos)
        << reply.error;
    server.stop_serving();
    EXPECT_FALSE(called);
}

TEST(control_socket, no_server_is_one_clear_error) {
    temp_dir dir;
    auto reply = control_request(dir.path / "control.sock", "reload", 1s);
    EXPECT_FALSE(reply.ok);
    EXPECT_EQ(reply.error, "no server is running (socket " + (dir.path / "control.sock").string() + ": no such file)");
}

TEST(control_socket, live_server_on_the_path_refuses_a_second_one) {
    temp_dir dir;
    auto path = dir.path / "control.sock";
    control_socket first(options_for(path));
    try {
        control_socket second(options_for(path));
        FAIL() << "a second control socket was created on a live one";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("another postern serve is running"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(control_socket, stale_socket_is_replaced_and_removed_at_the_end) {
    temp_dir dir;
    auto path = dir.path / "control.sock";
    {   // a socket file nobody listens on any more
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, path.c_str());
        ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        ::close(fd);
    }
    EXPECT_EQ(control_request(path, "reload", 1s).error,
              "no server is running (socket " + path.string() + ": connection refused)");
    {
        control_socket server(options_for(path));
        server.start({[] { return control_reply{true, "", ""}; }, {}});
        EXPECT_TRUE(control_request(path, "reload", 5s).ok);
    }
    EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(control_socket, something_else_in_the_way_is_refused) {
    temp_dir dir;
    auto path = dir.path / "control.sock";
    std::filesystem::create_directory(path);
    EXPECT_THROW(control_socket{options_for(path)}, std::runtime_error);
    EXPECT_TRUE(std::filesystem::is_directory(path));
}

TEST(control_socket, a_directory_other_users_may_write_is_refused) {
    temp_dir dir;
    auto shared = dir.path / "shared";
    std::filesystem::create_directory(shared);
    ::chmod(shared.c_str(), 0777);                 // writable by all, not sticky
    try {
        control_socket server(options_for(shared / "control.sock"));
        FAIL() << "a control socket was made in a directory other users may write";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("can be written by other users"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(shared / "control.sock"));
    auto sticky = dir.path / "sticky";
    std::filesystem::create_directory(sticky);
    ::chmod(sticky.c_str(), 01777);                // like /tmp: others cannot remove our file
    control_socket server(options_for(sticky / "control.sock"));
    struct stat st {};
    ASSERT_EQ(::lstat((sticky / "control.sock").c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(control_socket, stop_client_waits_until_the_server_is_gone) {
    temp_dir dir;
    auto path = dir.path / "control.sock";
    auto server = std::make_unique<control_socket>(options_for(path));
    std::promise<void> stop_called;
    server->start({{}, [&] {
                       stop_called.set_value();
                       return control_reply{true, "", ""};
                   }});
    auto client = std::async(std::launch::async, [&] { return control_request(path, "stop", 10s, true); });
    stop_called.get_future().wait();
    // The reply is sent, but the client waits for the end of the connection.
    EXPECT_EQ(client.wait_for(200ms), std::future_status::timeout);
    server->stop_serving();
    server.reset();   // the server is gone: its held connection closes
    auto reply = client.get();
    EXPECT_TRUE(reply.ok) << reply.error;
}

}  // namespace
}  // namespace postern::daemon
