// tls/error.hpp: the one exception type of tls/.
#pragma once

#include <stdexcept>

namespace postern::tls {

/// Thrown when the key ring, the stash or a [tls] value cannot be used. what() is one
/// clear line naming the file and the cause (never the password).
struct tls_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace postern::tls
