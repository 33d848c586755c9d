// tls/keyring/secret.hpp: a password held in memory only as long as needed.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <openssl/crypto.h>

namespace postern::tls {

/// A string that is wiped when it dies. Deliberately not printable: no operator<<, and
/// the value is only reachable through view().
class secret {
public:
    secret() = default;
    explicit secret(std::string value) : value_(std::move(value)) {}
    secret(secret&& other) noexcept : value_(std::move(other.value_)) { other.wipe(); }
    secret& operator=(secret&& other) noexcept {
        if (this != &other) {
            wipe();
            value_ = std::move(other.value_);
            other.wipe();
        }
        return *this;
    }
    secret(const secret&) = delete;
    secret& operator=(const secret&) = delete;
    ~secret() { wipe(); }

    std::string_view view() const { return value_; }
    bool empty() const { return value_.empty(); }

private:
    void wipe() {
        if (!value_.empty()) OPENSSL_cleanse(value_.data(), value_.size());
        value_.clear();
    }
    std::string value_;
};

}  // namespace postern::tls
