// queue/store.cpp: what every store shares.
#include "queue/store.hpp"

#include <future>

namespace postern::queue {

change_result change_and_wait(store& s, std::string id, envelope_change apply) {
    std::promise<change_result> promise;
    auto future = promise.get_future();
    s.change(std::move(id), std::move(apply), [&promise](change_result r) { promise.set_value(std::move(r)); });
    return future.get();
}

std::unique_ptr<body_spool> store::open_spool() { return std::make_unique<memory_spool>(); }

void store::commit_spooled(envelope env, std::unique_ptr<body_spool> spool, std::string tail,
                           std::function<void(commit_result)> done) {
    std::string body;
    if (auto* in_memory = dynamic_cast<memory_spool*>(spool.get())) body = in_memory->take();
    body += tail;
    commit(std::move(env), std::move(body), std::move(done));
}

}  // namespace postern::queue
