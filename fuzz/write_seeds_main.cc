// Writes each fuzz target's seed corpus (fuzz/seeds.h) as files under DIR/<target>/, the
// starting corpus of `make fuzz`.
// Usage: fuzz-write-seeds DIR
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "fuzz/seeds.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuzz-write-seeds DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  mkdir(dir.c_str(), 0755);
  for (const std::string& target : relay::fuzz::TargetNames()) {
    const std::string sub = dir + "/" + target;
    mkdir(sub.c_str(), 0755);
    int i = 0;
    for (const std::string& seed : relay::fuzz::SeedsFor(target)) {
      std::ofstream(sub + "/seed-" + std::to_string(i++), std::ios::binary) << seed;
    }
  }
  return 0;
}
