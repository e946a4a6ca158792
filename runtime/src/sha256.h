// SHA-256 (FIPS 180-4) of a byte string, as lowercase hex: the manifest's checksums. Android has
// no system crypto library an NDK app may link, so the runtime carries this one function.
#ifndef MNV3_SHA256_H_
#define MNV3_SHA256_H_

#include <cstddef>
#include <string>

namespace mnv3 {
std::string Sha256Hex(const void* data, size_t size);
inline std::string Sha256Hex(const std::string& data) { return Sha256Hex(data.data(), data.size()); }
}  // namespace mnv3

#endif  // MNV3_SHA256_H_
