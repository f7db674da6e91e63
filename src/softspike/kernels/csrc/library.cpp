// The library's ABI version: softspike/kernels/native.py refuses a cached build of another.

extern "C" {

int ss_abi_version() { return 3; }

}  // extern "C"
