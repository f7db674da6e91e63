"""Networks as JSON specs: the spec language, the builder and the model zoo."""
