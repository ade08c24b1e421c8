#pragma once
// A lock-free multi-producer, single-consumer queue of closures (Vyukov's intrusive
// MPSC queue): producers never block each other or the consumer. The holder of the
// engine's worker lock is the one consumer (one at a time; the lock orders them).

#include <atomic>
#include <functional>
#include <memory>

namespace troupe::transport::detail {

class mpsc_queue {
public:
  mpsc_queue() : head_(&stub_), tail_(&stub_) {}

  ~mpsc_queue() {
    while (auto n = pop_node())
      delete n;
  }

  mpsc_queue(const mpsc_queue&) = delete;
  mpsc_queue& operator=(const mpsc_queue&) = delete;

  /// Any thread.
  void push(std::function<void()> fn) { push_node(new node{{nullptr}, std::move(fn)}); }

  /// Consumer only. Returns false when nothing is ready; an item whose producer is
  /// still linking it in shows up on a later call.
  bool pop(std::function<void()>& out) {
    auto n = pop_node();
    if (n == nullptr)
      return false;
    out = std::move(n->fn);
    delete n;
    return true;
  }

private:
  struct node {
    std::atomic<node*> next;
    std::function<void()> fn;
  };

  void push_node(node* n) {
    n->next.store(nullptr, std::memory_order_relaxed);
    auto prev = head_.exchange(n, std::memory_order_acq_rel);
    prev->next.store(n, std::memory_order_release);
  }

  node* pop_node() {
    auto tail = tail_;
    auto next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr)
        return nullptr;
      tail_ = next;
      tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire))
      return nullptr; // a producer is between its exchange and its link
    push_node(&stub_);
    next = tail->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  std::atomic<node*> head_; // producers
  node* tail_;              // consumer
  node stub_{{nullptr}, {}};
};

} // namespace troupe::transport::detail
