"""Planning a pipeline before training: profile the blocks, split them into stages, write the plan document."""
