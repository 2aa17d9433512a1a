// Checkpoints: one HDF5 file per step, `<dir>/step_00001000.h5`, that is either complete and
// verified or refused, never silently wrong.
//
// File layout (all tensors fp32 little-endian in their LOGICAL shape, ParamInfo::shape, so a
// checkpoint loads on any world size):
//   /model/<name>, /optim/exp_avg/<name>, /optim/exp_avg_sq/<name>
//     chunked along the first dimension (chunks <= 4 MiB) with the Fletcher32 filter, plus an
//     attribute "crc32" (CRC-32/ISO-HDLC, zlib's crc32, of the dataset's little-endian bytes);
//   root attributes: every CheckpointMeta field, "tensors" (the tensor names, one per line, in
//     table order), "meta_crc32" (CRC of all of these) and "complete" = 1, written last.
// The file uses the HDF5 1.10 format, whose metadata (superblock, object headers,
// chunk index) carries its own checksums, so damaged metadata fails to open as well.
//
// Writing is crash-safe: temporary name in the same directory, flush, close, fsync, rename,
// fsync of the directory, then `<dir>/latest` (the file name, one line) replaced the same way.
// Readers treat `latest` as a hint and take the newest step file that verifies.
// A write interrupted at any point leaves either the previous state or a stray
// `step_*.h5.tmp-<pid>` that readers ignore and the next save removes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"
#include "trainer/checkpoint_error.h"

namespace nexus {

struct CheckpointMeta {
  int format_version = 1;
  idx step = 0;  // optimizer steps completed (the run resumes at this step index)
  std::int64_t tokens_seen = 0;
  std::string config_ini;       // to_ini(options) of the run
  std::string loader_position;  // LoaderPosition::to_string()
  std::uint64_t seed = 0;       // the run's seed (all randomness derives from it and the step)
  idx optimizer_steps = 0;      // AdamW::steps()
  idx bad_steps = 0;
  bool operator==(const CheckpointMeta&) const = default;
};

inline constexpr int kCheckpointFormatVersion = 1;

// "step_00000100.h5": the file name of step `step`'s checkpoint.
std::string checkpoint_file_name(idx step);

// Writes <dir>/step_%08lld.h5 (step = meta.step; the directory is created if needed), updates
// <dir>/latest, then keeps the file just written plus the newest `keep` - 1 other step files
// (keep <= 0: keep all) and removes stray temporary files. Returns the path written.
// exp_avg / exp_avg_sq are flat buffers in the table's layout, like params. Only one process may
// write into a directory at a time. Throws CheckpointError (with HDF5's or the OS's reason).
// `publish_allowed` (optional) is asked just before the rename that publishes the file; false
// withdraws it (the temporary file is removed, CheckpointError thrown): a run whose launcher died
// must not publish a checkpoint nobody will resume.
std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, const ParamTable& table,
                            const float* params, const float* exp_avg, const float* exp_avg_sq, idx keep,
                            const std::function<bool()>& publish_allowed = {});

// Reads and verifies a checkpoint into the three flat buffers (table layout). Throws
// CheckpointError naming the file and the problem: not an HDF5 file or truncated, incomplete,
// unsupported format version, damaged metadata, architecture mismatch (the first differing
// [model] field with both values, e.g. "checkpoint runs/x/step_00000100.h5 was written for
// model.d_model = 128, this run has model.d_model = 256"), missing tensor, wrong shape, checksum
// failure. On a throw the buffers' contents are unspecified. A null buffer is verified but not
// stored (e.g. exp_avg / exp_avg_sq for an export that needs only the weights).
CheckpointMeta load_checkpoint(const std::string& path, const ModelConfig& expected, const ParamTable& table,
                               float* params, float* exp_avg, float* exp_avg_sq);

// The attributes only; still opens the file and checks "complete", the format version and the
// metadata checksum.
CheckpointMeta read_checkpoint_meta(const std::string& path);

// Full verification without a model: meta as above, and every tensor of every group present and
// matching its checksum. Throws CheckpointError; returns the meta on success.
CheckpointMeta verify_checkpoint(const std::string& path);

// Resolves `spec` for --resume:
//  - "latest": the newest step_*.h5 in ckpt_dir that verifies. <ckpt_dir>/latest is a hint
//    only: a writer killed between renaming step_N.h5 into place and rewriting `latest` leaves it
//    naming step N-1, and step N is used all the same; every disagreement with the hint and every
//    skipped (damaged) file is explained in `notes`;
//  - a directory: the same, in that directory;
//  - anything else is a file path that must verify.
// Returns "" when spec is "latest" (or a directory) and there is no checkpoint at all (a fresh
// start: no step files, no latest). Throws CheckpointError when a file path was given and is
// missing or damaged, or when checkpoints exist but none verifies.
std::string resolve_checkpoint(const std::string& spec, const std::string& ckpt_dir, std::vector<std::string>& notes);

// --resume in one pass over the data: resolves `spec` as resolve_checkpoint does, but each
// candidate is verified by loading it (every tensor read and checksummed once, not verified and
// then read again); a candidate that fails is skipped with a note and the next older one loaded
// over it. An architecture different from `expected` throws at once (older files share it).
// Returns the path loaded, with its meta in `meta`, or "" for a fresh start (nothing loaded).
// Throws CheckpointError as resolve_checkpoint; on a throw the buffers' contents are unspecified.
std::string resume_checkpoint(const std::string& spec, const std::string& ckpt_dir, const ModelConfig& expected,
                              const ParamTable& table, float* params, float* exp_avg, float* exp_avg_sq,
                              CheckpointMeta& meta, std::vector<std::string>& notes);

// `nexus inspect CHECKPOINT`: argv[0] is "inspect". Verifies the file (with the architecture
// stored in it) and prints step, tokens, the other meta fields, the config text, and each tensor's
// name, shape and L2 norm with the L2 norms of its optimizer moments. Returns 0. Bad usage and
// unusable files throw InspectError (a ConfigError: a clean exit with the message).
struct InspectError : ConfigError {
  using ConfigError::ConfigError;
};

}  // namespace nexus
