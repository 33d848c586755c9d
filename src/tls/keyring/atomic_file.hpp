// tls/keyring/atomic_file.hpp: the one way tls/ replaces a file (DESIGN.md §3 "Files").
#pragma once

#include <filesystem>
#include <string_view>

#include <sys/types.h>

namespace postern::tls {

/// Writes `bytes` to a temporary file (created 0600, then given `mode`) in the same
/// directory, fsyncs it, renames it over `file` and fsyncs the directory, so a crash leaves
/// either the old or the new content, never half of one. Throws tls_error.
void write_file_atomically(const std::filesystem::path& file, std::string_view bytes,
                           mode_t mode = 0600);

/// Reads a whole file. Throws tls_error naming the file.
std::string read_file(const std::filesystem::path& file);

}  // namespace postern::tls
