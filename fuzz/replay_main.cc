// The fuzz targets without libFuzzer (any compiler): replays the target's seeds
// (fuzz/seeds.h), a fixed number of deterministic mutations of them (byte flips,
// truncations, splices, random parameter tails), and any files given as arguments (a
// crash input from a fuzzing run, say). `make test` runs this for every target, so the
// targets and their properties are checked in every build, sanitizers included;
// `make fuzz` runs the real fuzzers (clang, libFuzzer).
// Usage: fuzz_<target>_replay [--mutations=N] [FILE...]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "fuzz/seeds.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string Mutate(const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  std::string s = seeds[rng() % seeds.size()];
  const int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits; ++i) {
    switch (rng() % 5) {
      case 0:  // flip a byte
        if (!s.empty()) {
          s[rng() % s.size()] ^= static_cast<char>(1 + rng() % 255);
        }
        break;
      case 1:  // truncate
        if (!s.empty()) {
          s.resize(rng() % s.size());
        }
        break;
      case 2:  // append another seed
        s += seeds[rng() % seeds.size()];
        break;
      case 3:  // random parameter bytes at the end
        for (int j = 0; j < 8; ++j) {
          s.push_back(static_cast<char>(rng()));
        }
        break;
      case 4:  // insert random bytes
        s.insert(s.empty() ? 0 : rng() % s.size(),
                 std::string(1 + rng() % 16, static_cast<char>(rng())));
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 20000;
  int files = 0;
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--mutations=", 12) == 0) {
      mutations = atol(argv[i] + 12);
      continue;
    }
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      fprintf(stderr, "cannot read %s\n", argv[i]);
      return 2;
    }
    std::stringstream buf;
    buf << in.rdbuf();
    Run(buf.str());
    ++files;
  }
  const std::vector<std::string> seeds = relay::fuzz::SeedsFor(FUZZ_TARGET_NAME);
  if (seeds.empty()) {
    fprintf(stderr, "no seeds for target %s\n", FUZZ_TARGET_NAME);
    return 2;
  }
  for (const std::string& s : seeds) {
    Run(s);
  }
  std::mt19937_64 rng(20261125);
  for (long i = 0; i < mutations; ++i) {
    Run(Mutate(seeds, rng));
  }
  printf("fuzz %s: %zu seeds, %ld mutations, %d files: no property broken\n", FUZZ_TARGET_NAME,
         seeds.size(), mutations, files);
  return 0;
}
