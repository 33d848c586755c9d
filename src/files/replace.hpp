// files/replace.hpp: the one way Postern replaces a whole file (DESIGN.md §3 "Files"): the
// key ring and its logs, certificates, the configuration `postern config set` edits, the
// ready file. (The queue's own files are RocksDB's and the body spool's: queue/.)
//
// The new content goes to a temporary file in the same directory ("." + name +
// ".tmp-XXXXXX", created 0600 with O_EXCL, so never through a symlink someone left in a
// shared directory), is fsynced, renamed over the file, and the directory is fsynced: a
// crash leaves the old content or the new, never half of one. The temporary file is held
// under flock() while written; one left by a writer that died is removed by the next.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string_view>

#include <sys/types.h>

namespace postern::files {

struct file_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct replace_options {
    /// Mode of the new file.
    mode_t mode = 0600;
    /// An existing file keeps its own mode instead (a configuration the service user reads).
    bool keep_mode = false;
    /// An existing file keeps its owner; when root writes a new file in a directory that
    /// belongs to someone else (data_dir, given to the service user), the file goes to the
    /// directory's owner, so the server can still read what root installed.
    bool keep_owner = false;
    /// Replace the file a symlink points to rather than the symlink.
    bool through_symlink = false;
};

/// Replaces `file` with `bytes` as above. Throws file_error naming the file and the step.
void replace_file(const std::filesystem::path& file, std::string_view bytes, const replace_options& options = {});

}  // namespace postern::files
