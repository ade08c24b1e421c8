// A shared library that is not a Troupe module: loading it must fail cleanly.
extern "C" int troupe_unrelated_symbol() {
  return 42;
}
