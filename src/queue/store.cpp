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

}  // namespace postern::queue
