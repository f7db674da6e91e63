"""softspike's kernels, one module per op family; which scan runs for a neuron is the backend catalog's
choice (`softspike.core.backends`, filled by `softspike.plugins.backends`), not this package's.

    scan_native     the neuron scans on the CPU: `torch.ops.softspike.lif_multistep` (csrc/scan.cpp)
    scan_torch      the neuron scans in tensor ops with a hand-written BPTT (any device and dtype)
    scan_compiled   any dynamics: one step compiled by torch.compile, Python looping over T
    spike_linear    a linear layer fed by spikes: sums of weight rows (`softspike::spike_linear_*`)
    spike_conv      a convolution fed by spikes (`softspike::spike_conv_*`)
    bn_lif          training-mode batch norm fused into the neuron scan after it (`softspike::bn_lif*`,
                    `FusingSequential`, the spec builder's container)
    spike_pool      max-pooling that keeps one byte per output for backward (`softspike::max_pool2d*`)
    sampling        the Poisson encoder's counter-hash stream (`softspike::poisson`)
    bitpack         saved spikes as bits (`softspike::pack_bits`, `unpack_bits`, `compact_saved_spikes`)
    pool            the buffer pool the native ops allocate their outputs from
    native          builds and loads the C++ library (csrc/: a source per op family, a shared header)
    common          what every native op shares: the library handle, argument checks, memory order
    devices         which kernel runs a spike op for given tensors: native, triton or tensor ops
    triton          the CUDA implementations of the same operators, in Triton

Importing this package imports none of them; core imports none of them (tests/test_core_imports.py):
kernels build on core, and plugins register them.
"""
