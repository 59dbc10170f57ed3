#include "core/compression.h"

#include <zlib.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace relay {
namespace {

// zlib's windowBits for each format.
absl::StatusOr<int> WindowBits(CompressAlgorithm algorithm) {
  switch (algorithm) {
    case CompressAlgorithm::kZlib:
      return 15;
    case CompressAlgorithm::kGzip:
      return 15 + 16;
    case CompressAlgorithm::kFlate:
      return -15;
    default:
      return absl::UnimplementedError(absl::StrCat("compression algorithm ",
                                                   static_cast<int>(algorithm),
                                                   " is not supported (zlib, gzip and flate are)"));
  }
}

}  // namespace

absl::StatusOr<std::string> Compress(CompressAlgorithm algorithm, absl::string_view data) {
  absl::StatusOr<int> bits = WindowBits(algorithm);
  if (!bits.ok()) {
    return bits.status();
  }
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, *bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("deflateInit2 failed");
  }
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  const size_t produced = out.size() - z.avail_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    return absl::InternalError(absl::StrCat("deflate failed (", rc, ")"));
  }
  out.resize(produced);
  return out;
}

absl::StatusOr<std::string> Decompress(CompressAlgorithm algorithm, absl::string_view data,
                                       size_t max_bytes) {
  absl::StatusOr<int> bits = WindowBits(algorithm);
  if (!bits.ok()) {
    return bits.status();
  }
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (inflateInit2(&z, *bits) != Z_OK) {
    return absl::InternalError("inflateInit2 failed");
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char chunk[64 * 1024];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof(chunk);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&z);
      return absl::DataLossError(absl::StrCat("corrupt compressed payload (zlib ", rc, ")"));
    }
    const size_t produced = sizeof(chunk) - z.avail_out;
    if (out.size() + produced > max_bytes) {
      inflateEnd(&z);
      return absl::ResourceExhaustedError(
          absl::StrCat("compressed payload inflates beyond ", max_bytes, " bytes"));
    }
    out.append(chunk, produced);
    if (rc == Z_OK && produced == 0 && z.avail_in == 0) {
      inflateEnd(&z);
      return absl::DataLossError("compressed payload cut short");
    }
  }
  inflateEnd(&z);
  return out;
}

}  // namespace relay
