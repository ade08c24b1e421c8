@0xcfa3686a860548ff;
# The remote protocol of the typed_protocol example: an application's own schema.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("geometry");

struct Polygon {
  xs @0 :List(Float64);
  ys @1 :List(Float64);
}

struct Area {
  value @0 :Float64;
}
