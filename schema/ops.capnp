@0xe638094eec52c857;
# The messages of Troupe's built-in ops (actors/ops/): what their origin and target
# sides send each other, inside the op framework's messages (runtime/ops.hpp).

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("troupe::schema::ops");

struct Ping {
  # `ping`: the origin sends it, the target sends it back unchanged.
  payload @0 :Data;
}
