"""HTTP fakes of the broker APIs, served on 127.0.0.1 for contract tests and local sandboxes."""
