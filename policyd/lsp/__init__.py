"""Package lsp is ``policyd lsp``: a language server for .policy files (LSP over stdio, pygls).

symbols.py indexes a file's names from the parser's syntax tree; server.py
wires diagnostics (the compiler's), hover, definition, references, rename,
completion and formatting (``policyd fmt``'s) into pygls.
"""
