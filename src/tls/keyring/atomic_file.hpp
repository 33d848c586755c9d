// tls/keyring/atomic_file.hpp: the one way tls/ replaces a file (DESIGN.md §3 "Files").
#pragma once

#include <filesystem>
#include <string_view>

#include <sys/types.h>

namespace postern::tls {

/// Replaces `file` with `bytes` (files/replace.hpp: a crash leaves the old content or the
/// new), with `mode`; an existing file keeps its owner. Throws tls_error.
void write_file_atomically(const std::filesystem::path& file, std::string_view bytes,
                           mode_t mode = 0600);

/// Reads a whole file. Throws tls_error naming the file.
std::string read_file(const std::filesystem::path& file);

}  // namespace postern::tls
