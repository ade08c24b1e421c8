// Write your own op: "example.wordcount" sends a chunk of text to each target node;
// each target counts its words and answers; the origin adds the counts up. Two nodes
// in this one process stand for two machines (they talk over UCX all the same). The
// README shows this file; the build compiles it and a test runs it.
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <capnp/message.h>

#include "apps/examples/wordcount.capnp.h"
#include <troupe/base/error.hpp>
#include <troupe/runtime/config.hpp>
#include <troupe/runtime/node.hpp>
#include <troupe/runtime/ops.hpp>

using namespace troupe;

// 1. The target side: one per target node and op instance, made by that node's op
//    dispatcher when the origin's first message arrives.
class count_target : public ops::target_side {
public:
  ops::step on_start(ops::target_context& ctx, const typed_message& m) override {
    if (!m.holds<Chunk>())
      return ops::step::fail(make_error(errc::refused, "expected a Chunk"));
    typed_reader<Chunk> chunk{m};
    std::istringstream words{chunk.root().getText().cStr()};
    uint64_t n = 0;
    for (std::string w; words >> w;)
      ++n;
    capnp::MallocMessageBuilder answer;
    answer.initRoot<Count>().setWords(n);
    ctx.reply(typed_message::of<Count>(answer));
    return ops::step::done(); // this side ends; its reply goes out first
  }
};

// 2. The origin side: made by launch() with the caller's arguments.
class count_origin : public ops::origin_side {
public:
  explicit count_origin(std::vector<std::string> chunks) : chunks_(std::move(chunks)) {}

  ops::step on_start(ops::origin_context& ctx) override {
    for (size_t i = 0; i < ctx.targets().size(); ++i) {
      capnp::MallocMessageBuilder chunk;
      chunk.initRoot<Chunk>().setText(chunks_[i % chunks_.size()]);
      ctx.send(i, typed_message::of<Chunk>(chunk));
    }
    return ops::step::wait();
  }

  ops::step on_message(ops::origin_context& ctx, size_t,
                       const typed_message& m) override {
    total_ += typed_reader<Count>{m}.root().getWords();
    if (++answers_ < ctx.targets().size())
      return ops::step::wait();
    return ops::step::done(caf::make_message(total_)); // the caller's result
  }

private:
  std::vector<std::string> chunks_;
  uint64_t total_ = 0;
  size_t answers_ = 0;
};

// 3. The op type: a name (its id is a hash of it) and the two sides.
struct word_count_op {
  static constexpr const char* name = "example.wordcount";
  using origin = count_origin;
  using target = count_target;
};

int main() {
  node here{parse_node_config("{}", "origin")};
  node there{parse_node_config("{}", "target")};
  // 4. Every node taking part registers the op type.
  for (auto* n : {&here, &there}) {
    if (auto err = n->ops().registry().add<word_count_op>()) {
      std::cerr << describe(err) << "\n";
      return 1;
    }
    if (auto err = n->start()) {
      std::cerr << describe(err) << "\n";
      return 1;
    }
  }
  // 5. Launch it on two targets (the same node twice here) and wait for the result.
  auto op = ops::launch<word_count_op>(
    here, {there.address(), there.address()},
    std::vector<std::string>{"to be or not to be", "that is the question"});
  auto result = op.get();
  if (!result) {
    std::cerr << "wordcount failed: " << describe(result.error()) << "\n";
    return 1;
  }
  std::cout << "words: " << result->get_as<uint64_t>(0) << "\n";
  return 0;
}
