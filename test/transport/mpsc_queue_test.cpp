#define BOOST_TEST_MODULE transport_mpsc_queue
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "transport/detail/mpsc_queue.hpp"

using troupe::transport::detail::mpsc_queue;

BOOST_AUTO_TEST_CASE(every_item_arrives_once_and_each_producer_in_order) {
  constexpr int producers = 4;
  constexpr int per_producer = 100000;
  mpsc_queue queue;
  std::vector<int> last(producers, -1);
  bool in_order = true;
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p)
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i)
        queue.push([&, p, i] {
          in_order = in_order && last[p] == i - 1;
          last[p] = i;
        });
    });
  int popped = 0;
  std::function<void()> fn;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (popped < producers * per_producer
         && std::chrono::steady_clock::now() < deadline) {
    if (queue.pop(fn)) {
      fn();
      ++popped;
    }
  }
  for (auto& t : threads)
    t.join();
  BOOST_TEST(popped == producers * per_producer);
  BOOST_TEST(in_order);
  BOOST_TEST(!queue.pop(fn));
}

BOOST_AUTO_TEST_CASE(items_left_at_destruction_are_freed) {
  auto counter = std::make_shared<int>(0);
  {
    mpsc_queue queue;
    for (int i = 0; i < 10; ++i)
      queue.push([counter] { ++*counter; });
  }
  // The closures (and their copies of counter) are gone, none of them ran.
  BOOST_TEST(counter.use_count() == 1);
  BOOST_TEST(*counter == 0);
}
