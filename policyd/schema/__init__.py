"""Package schema holds the compiled policy IR and the checks that run over it."""
