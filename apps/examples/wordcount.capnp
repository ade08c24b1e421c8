@0xd3a1f0c2b7e49a51;
# The messages of the README's "write your own op" example (word_count_op.cpp).

struct Chunk {
  text @0 :Text;
}

struct Count {
  words @0 :UInt64;
}
