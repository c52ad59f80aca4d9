// parallel_for() and Team, which build parts of the index on several threads (a private header).
#include "rank/parallel.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <stdexcept>
#include <vector>

using madoguchi::bot::detail::parallel_for;
using madoguchi::bot::detail::Team;
using madoguchi::bot::detail::worker_count;

TEST_SUITE("bot.parallel") {
  TEST_CASE("every item is visited once, whatever the threads and the block size") {
    for (std::size_t n : {0u, 1u, 7u, 64u, 1000u}) {
      for (unsigned threads : {0u, 1u, 2u, 5u}) {
        for (std::size_t grain : {0u, 1u, 3u, 256u}) {
          std::vector<std::atomic<int>> seen(n);
          parallel_for(n, threads, grain, [&](std::size_t begin, std::size_t end) {
            for (std::size_t i = begin; i < end; ++i) seen[i].fetch_add(1);
          });
          int wrong = 0;
          for (const auto& s : seen) wrong += s.load() == 1 ? 0 : 1;
          INFO("n " << n << ", threads " << threads << ", grain " << grain);
          CHECK(wrong == 0);
        }
      }
    }
  }

  TEST_CASE("an exception in a block reaches the caller, once every thread has stopped") {
    for (unsigned threads : {1u, 4u}) {
      std::atomic<int> running{0};
      CHECK_THROWS_AS(parallel_for(10000, threads, 1,
                                   [&](std::size_t begin, std::size_t end) {
                                     running.fetch_add(1);
                                     if (begin <= 3 && 3 < end) {  // the block holding item 3
                                       running.fetch_sub(1);
                                       throw std::runtime_error("block 3");
                                     }
                                     running.fetch_sub(1);
                                   }),
                      std::runtime_error);
      CHECK(running.load() == 0);
    }
  }

  TEST_CASE("no more threads than blocks, at least one, and at most 8 unless asked") {
    CHECK(worker_count(4, 10, 100) == 1);
    CHECK(worker_count(4, 1000, 100) == 4);
    CHECK(worker_count(16, 1 << 20, 1) == 16);
    CHECK(worker_count(0, 1 << 20, 1) >= 1);
    CHECK(worker_count(0, 1 << 20, 1) <= 8);
    CHECK(worker_count(0, 0, 1) == 1);
  }

  TEST_CASE("a team runs each task once on every thread, one task after another") {
    for (unsigned threads : {1u, 2u, 4u}) {
      Team team(threads);
      REQUIRE(team.size() >= 1);
      REQUIRE(team.size() <= threads);
      std::vector<int> calls(team.size(), 0);  // each thread writes its own slot
      std::atomic<unsigned> returned{0};
      int late = 0, early = 0;
      for (int task = 0; task < 2000; ++task) {
        returned.store(0);
        team.run([&](unsigned i) {
          calls[i] += 1;
          returned.fetch_add(1);
        });
        // run() returns only when every call of the task has, and none is still to come.
        if (returned.load() != team.size()) ++early;
        if (returned.load() > team.size()) ++late;
      }
      INFO("threads " << threads);
      for (int c : calls) CHECK(c == 2000);
      CHECK(early == 0);
      CHECK(late == 0);
    }
  }

  TEST_CASE("an exception in a team's task reaches the caller, and the team goes on") {
    Team team(3);
    const unsigned last = team.size() - 1;
    CHECK_THROWS_AS(team.run([&](unsigned i) {
                      if (i == last) throw std::runtime_error("task");
                    }),
                    std::runtime_error);
    std::atomic<unsigned> ran{0};
    team.run([&](unsigned) { ran.fetch_add(1); });
    CHECK(ran.load() == team.size());
  }
}
