// Helpers shared by the queue tests: a private temporary directory and a blocking commit.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>

#include "queue/store.hpp"

namespace postern::queue::testing {

class temp_dir {
public:
    temp_dir() {
        auto base = std::filesystem::temp_directory_path() / "postern-queue-test-XXXXXX";
        std::string pattern = base.string();
        if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

inline commit_result commit_and_wait(store& s, envelope env, std::string body) {
    std::promise<commit_result> promise;
    auto future = promise.get_future();
    s.commit(std::move(env), std::move(body), [&promise](commit_result r) { promise.set_value(std::move(r)); });
    return future.get();
}

inline recipient make_recipient(std::string address, std::string orcpt = {}) {
    recipient r;
    r.address = std::move(address);
    r.orcpt = std::move(orcpt);
    return r;
}

inline envelope sample_envelope(const std::string& from = "alice@client.test") {
    envelope env;
    env.mail_from = from;
    env.recipients.push_back(make_recipient("bob@partner.test", "rfc822;bob@partner.test"));
    env.recipients.push_back(make_recipient("carol@partner.test"));
    env.body_8bit = true;
    env.envid = "QQ314159";
    env.ret = "HDRS";
    env.client_address = "192.0.2.7:49152";
    env.client_helo = "client.test";
    env.receive_connector = "from-partner";
    env.session_id = "08DB5A1E00000001";
    env.received_at = std::chrono::system_clock::now();
    return env;
}

}  // namespace postern::queue::testing
