"""Running a pipelined or data-parallel training: the processes torchrun (or `--nproc`) starts."""
