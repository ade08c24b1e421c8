@0x9dd0c418bc9f441f;
# A small application protocol for the typed-payload tests.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("troupe::test_protocol");

struct Point {
  x @0 :Int64;
  y @1 :Int64;
  label @2 :Text;
  samples @3 :List(Float64);
}

struct Summary {
  # What the "pointer" test provider answers a Point with.
  swappedX @0 :Int64;
  swappedY @1 :Int64;
  label @2 :Text;          # upper-cased
  sampleCount @3 :UInt64;
  sampleSum @4 :Float64;
}
