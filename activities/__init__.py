"""Side effects of the lifecycles: database writes and email sends, each idempotent under retry."""
