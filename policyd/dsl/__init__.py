"""Package dsl turns .policy text into a syntax tree, a compiled Schema and canonical text."""
